// Server's metrics (SPEC "Admin", README "Metrics"): the Prometheus text exposition of
// every counter and gauge, read from the published routing (every pool's nodes, with
// pool and backend labels), the workers' stats, gossip and discovery. Control thread
// only, as the rest of Server.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "proxy/server.h"

namespace ringproxy {

namespace {

// Prometheus label values escape backslash, double quote and newline.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// One histogram's series: cumulative buckets, sum and count. `labels` is "" or
// `name="value",` (with the trailing comma).
void histogram(std::string& out, const char* name, const std::string& labels,
               const uint64_t (&buckets)[kDurationBuckets + 1], uint64_t sum_us) {
  char num[64];
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= kDurationBuckets; ++i) {
    cumulative += buckets[i];
    if (i < kDurationBuckets) {
      std::snprintf(num, sizeof num, "%g", kDurationBounds[i]);
    } else {
      std::snprintf(num, sizeof num, "+Inf");
    }
    out += std::string(name) + "_bucket{" + labels + "le=\"" + num + "\"} " + std::to_string(cumulative) + "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
  std::snprintf(num, sizeof num, "%.6f", static_cast<double>(sum_us) / 1e6);
  out += std::string(name) + "_sum" + braces + " " + num + "\n";
  out += std::string(name) + "_count" + braces + " " + std::to_string(cumulative) + "\n";
}

}  // namespace

std::string Server::metrics_text() {
  const auto r = routing();
  std::string out;
  // Every series of a node has the labels pool="P",backend="B" (SPEC "Several tiers").
  std::vector<std::pair<const Pool*, const Backend*>> nodes;
  std::vector<std::string> node_labels;
  std::vector<double> shares;
  for (const Pool& pool : r->pools) {
    const std::vector<double> pool_shares = pool.ring->shares();
    for (NodeIndex i = 0; i < pool.backends.size(); ++i) {
      nodes.emplace_back(&pool, &pool.backends[i]);
      node_labels.push_back("pool=\"" + label(pool.name()) + "\",backend=\"" + label(pool.backends[i].name) + "\"");
      shares.push_back(pool_shares[i]);
    }
  }
  char num[64];
  family(out, "ringproxy_requests_total", "counter",
         "Requests answered, by backend, status class and client protocol.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    for (int c = 1; c <= 5; ++c) {
      for (int p = 0; p < kClientProtocols; ++p) {
        out += "ringproxy_requests_total{" + node_labels[n] + ",code=\"" + std::to_string(c) + "xx\",protocol=\"" +
               kClientProtocolNames[p] + "\"} " + std::to_string(b.state->responses(c, p)) + "\n";
      }
    }
  }
  uint64_t no_node[kClientProtocols] = {}, client_errors[kClientProtocols] = {};
  uint64_t retries = 0, reconnects = 0, sum_us = 0;
  uint64_t local_connect = 0, local_accept = 0, pauses = 0;
  uint64_t buckets[kDurationBuckets + 1] = {};
  for (const auto& w : workers_) {
    const WorkerStats& s = w->stats();
    local_connect += s.local_errors_connect.load(std::memory_order_relaxed);
    local_accept += s.local_errors_accept.load(std::memory_order_relaxed);
    pauses += s.accept_pauses.load(std::memory_order_relaxed);
    for (int p = 0; p < kClientProtocols; ++p) {
      no_node[p] += s.no_node[p].load(std::memory_order_relaxed);
      client_errors[p] += s.client_errors[p].load(std::memory_order_relaxed);
    }
    retries += s.retries.load(std::memory_order_relaxed);
    reconnects += s.reconnects.load(std::memory_order_relaxed);
    s.duration.add_to(buckets, &sum_us);
  }
  for (int p = 0; p < kClientProtocols; ++p) {
    const std::string protocol = std::string(",protocol=\"") + kClientProtocolNames[p] + "\"} ";
    out += "ringproxy_requests_total{pool=\"\",backend=\"\",code=\"5xx\"" + protocol + std::to_string(no_node[p]) + "\n";
    out += "ringproxy_requests_total{pool=\"\",backend=\"\",code=\"4xx\"" + protocol + std::to_string(client_errors[p]) +
           "\n";
  }

  family(out, "ringproxy_request_duration_seconds", "histogram",
         "Time from the first byte of a request to the end of its response.");
  histogram(out, "ringproxy_request_duration_seconds", "", buckets, sum_us);

  family(out, "ringproxy_upstream_header_duration_seconds", "histogram",
         "Time from a request head sent to the backend to its response head received: the backend's "
         "time to answer (with the request body's upload, when there is one).");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    uint64_t node_buckets[kDurationBuckets + 1] = {};
    uint64_t node_sum_us = 0;
    b.state->header_time(node_buckets, &node_sum_us);
    histogram(out, "ringproxy_upstream_header_duration_seconds", node_labels[n] + ",", node_buckets,
              node_sum_us);
  }

  family(out, "ringproxy_backend_up", "gauge", "1 when the backend passes its health checks and is not ejected.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    const bool up = b.state->up.load() && !b.state->ejected.load();
    out += "ringproxy_backend_up{" + node_labels[n] + "} " + (up ? "1" : "0") + "\n";
  }
  family(out, "ringproxy_backend_draining", "gauge", "1 when the backend is drained by the admin.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    out += "ringproxy_backend_draining{" + node_labels[n] + "} " + (b.state->draining.load() ? "1" : "0") +
           "\n";
  }
  family(out, "ringproxy_backend_in_flight", "gauge", "Requests in flight at the backend.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    out += "ringproxy_backend_in_flight{" + node_labels[n] + "} " + std::to_string(b.state->in_flight.load()) +
           "\n";
  }
  family(out, "ringproxy_backend_failures_total", "counter",
         "Failed attempts: connect errors, resets, timeouts, malformed responses, 5xx.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    out += "ringproxy_backend_failures_total{" + node_labels[n] + "} " + std::to_string(b.state->failures()) +
           "\n";
  }
  family(out, "ringproxy_ring_share", "gauge", "Fraction of the hash space the backend owns.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    std::snprintf(num, sizeof num, "%.6f", shares[n]);
    out += "ringproxy_ring_share{" + node_labels[n] + "} " + num + "\n";
  }
  family(out, "ringproxy_ejections_total", "counter", "Passive ejections of the backend.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    out += "ringproxy_ejections_total{" + node_labels[n] + "} " + std::to_string(b.state->ejections.load()) +
           "\n";
  }
  family(out, "ringproxy_ejections_refused_total", "counter",
         "Ejections refused by max_ejected_percent: the backend was used anyway.");
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Backend& b = *nodes[n].second;
    out += "ringproxy_ejections_refused_total{" + node_labels[n] + "} " +
           std::to_string(b.state->ejections_refused.load()) + "\n";
  }
  family(out, "ringproxy_tls_handshakes_total", "counter",
         "Client TLS handshakes by result: full, resumed, error (no common version or cipher, a bad "
         "certificate), timeout (proxy.tls.handshake_timeout_ms), closed (by the client before the end), "
         "plain_http (an HTTP request on the TLS port, answered 400).");
  {
    uint64_t by_result[WorkerStats::kTlsResults] = {};
    for (const auto& w : workers_) {
      for (size_t i = 0; i < WorkerStats::kTlsResults; ++i) {
        by_result[i] += w->stats().tls_handshakes[i].load(std::memory_order_relaxed);
      }
    }
    for (size_t i = 0; i < WorkerStats::kTlsResults; ++i) {
      out += std::string("ringproxy_tls_handshakes_total{result=\"") + WorkerStats::kTlsResultNames[i] + "\"} " +
             std::to_string(by_result[i]) + "\n";
    }
  }
  if (std::any_of(r->listeners.begin(), r->listeners.end(), [](const ListenerRouting& l) { return l.tls != nullptr; })) {
    family(out, "ringproxy_tls_certificate_expiry_seconds", "gauge",
           "Seconds until the certificate (proxy.tls.certificates and each [[listener]]'s, by file) expires; "
           "negative once expired.");
    const auto now = static_cast<int64_t>(std::time(nullptr));
    std::set<std::string> said;  // a file two listeners use is one series
    for (const ListenerRouting& l : r->listeners) {
      if (!l.tls) continue;
      for (const ServerTlsContext::Certificate& c : l.tls->certificates()) {
        if (!said.insert(c.path).second) continue;
        out += "ringproxy_tls_certificate_expiry_seconds{certificate=\"" + label(c.path) + "\"} " +
               std::to_string(static_cast<int64_t>(c.not_after) - now) + "\n";
      }
    }
  }
  family(out, "ringproxy_connections_active", "gauge", "Open client connections.");
  out += "ringproxy_connections_active " + std::to_string(shared_.connections.load()) + "\n";
  family(out, "ringproxy_retries_total", "counter", "Requests sent again to the next node.");
  out += "ringproxy_retries_total " + std::to_string(retries) + "\n";
  family(out, "ringproxy_upstream_reconnects_total", "counter",
         "Requests sent again on a new connection to the same node after a pooled connection "
         "turned out closed (once per request; not a node failure).");
  out += "ringproxy_upstream_reconnects_total " + std::to_string(reconnects) + "\n";
  family(out, "ringproxy_local_resource_errors_total", "counter",
         "Connects to a backend (answered 503, not counted against the node) and accepts that failed for want "
         "of file descriptors or memory in this process.");
  out += "ringproxy_local_resource_errors_total{op=\"connect\"} " + std::to_string(local_connect) + "\n";
  out += "ringproxy_local_resource_errors_total{op=\"accept\"} " + std::to_string(local_accept) + "\n";
  family(out, "ringproxy_accept_pauses_total", "counter",
         "Times a worker stopped accepting for want of file descriptors; new connections wait in the listen "
         "queue meanwhile.");
  out += "ringproxy_accept_pauses_total " + std::to_string(pauses) + "\n";
  family(out, "ringproxy_gossip_members", "gauge", "Proxy instances known, by state (this one only while gossip is off).");
  {
    size_t by_state[4] = {};
    for (const gossip::Member& m : members()) ++by_state[static_cast<size_t>(m.state)];
    for (gossip::MemberState st : {gossip::MemberState::kAlive, gossip::MemberState::kSuspect,
                                   gossip::MemberState::kDead, gossip::MemberState::kLeft}) {
      out += "ringproxy_gossip_members{state=\"" + std::string(gossip::to_string(st)) + "\"} " +
             std::to_string(by_state[static_cast<size_t>(st)]) + "\n";
    }
  }
  if (gossip_) {
    const gossip::UdpStats& u = gossip_->transport_stats();
    family(out, "ringproxy_gossip_messages_total", "counter", "Gossip datagrams sent and accepted.");
    out += "ringproxy_gossip_messages_total{direction=\"sent\"} " + std::to_string(u.sent) + "\n";
    out += "ringproxy_gossip_messages_total{direction=\"received\"} " + std::to_string(u.received) + "\n";
    family(out, "ringproxy_gossip_dropped_total", "counter", "Gossip datagrams dropped, by cause.");
    const std::pair<const char*, uint64_t> drops[] = {
        {"unauthenticated", u.dropped_unauthenticated}, {"unknown_key", u.dropped_unknown_key},
        {"forged", u.dropped_forged},                   {"replayed", u.dropped_replayed},
        {"oversized", u.dropped_oversized},             {"malformed", u.dropped_malformed},
        {"undecodable", gossip_->decode_errors()},      {"send_error", u.send_errors}};
    for (const auto& [cause, n] : drops) {
      out += std::string("ringproxy_gossip_dropped_total{cause=\"") + cause + "\"} " + std::to_string(n) + "\n";
    }
    const gossip::KvStore& store = gossip_->store();
    family(out, "ringproxy_gossip_entries", "gauge",
           "Entries of the shared store held here: live, and tombstones (deletes, kept 48 h after they arrive).");
    out += "ringproxy_gossip_entries{kind=\"live\"} " + std::to_string(store.size() - store.tombstones()) + "\n";
    out += "ringproxy_gossip_entries{kind=\"tombstone\"} " + std::to_string(store.tombstones()) + "\n";
    family(out, "ringproxy_gossip_tombstones_collected_total", "counter",
           "Tombstones dropped from the shared store once past the 48 h horizon.");
    out += "ringproxy_gossip_tombstones_collected_total " + std::to_string(store.collected()) + "\n";
    family(out, "ringproxy_gossip_refused_total", "counter",
           "Entries refused as older than deletes already collected (a deleted value coming back, or a write from an "
           "instance cut off for longer than the horizon), and deleted everywhere.");
    out += "ringproxy_gossip_refused_total " + std::to_string(store.refused()) + "\n";
  }
  if (const auto dns = discovery_status(); !dns.empty()) {
    family(out, "ringproxy_dns_resolutions_total", "counter",
           "DNS answers for [[discover]] sources and backends' names, by result (ok, empty, nxdomain, servfail, "
           "refused, timeout, malformed, error).");
    for (const DiscoveryAgent::Status& st : dns) {
      for (const auto& [result, n] : st.results) {
        out += "ringproxy_dns_resolutions_total{source=\"" + label(st.name) + "\",result=\"" + result + "\"} " +
               std::to_string(n) + "\n";
      }
    }
    family(out, "ringproxy_dns_holding", "gauge",
           "1 while a source or name fails to resolve and its last good answer is kept (dns.hold_ms).");
    for (const DiscoveryAgent::Status& st : dns) {
      out += "ringproxy_dns_holding{source=\"" + label(st.name) + "\"} " + (st.holding ? "1" : "0") + "\n";
    }
  }
  family(out, "ringproxy_config_generation", "gauge", "Routing publications since start.");
  out += "ringproxy_config_generation " + std::to_string(r->generation) + "\n";
  return out;
}

}  // namespace ringproxy
