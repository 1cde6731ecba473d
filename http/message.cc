#include "http/message.h"

namespace ringproxy {

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals_same_size(std::string_view a, std::string_view b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view find_header(std::span<const HeaderView> headers, std::string_view name,
                             bool* found) {
  for (const HeaderView& h : headers) {
    if (iequals(h.name, name)) {
      if (found) *found = true;
      return h.value;
    }
  }
  if (found) *found = false;
  return {};
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

ConnectionOptions ConnectionOptions::of(std::span<const HeaderView> headers) {
  ConnectionOptions c;
  for (const HeaderView& h : headers) {
    if (h.name.size() != 10 || !iequals(h.name, "connection")) continue;
    if (iequals(trim_ows(h.value), "keep-alive")) continue;
    if (c.count == kInline) {
      c.all = headers;
      ++c.count;
      return c;
    }
    c.lines[c.count++] = h.value;
  }
  return c;
}

bool ConnectionOptions::has(std::string_view token) const {
  if (count > kInline) {
    for (const HeaderView& h : all) {
      if (h.name.size() == 10 && iequals(h.name, "connection") && has_token(h.value, token)) return true;
    }
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    if (has_token(lines[i], token)) return true;
  }
  return false;
}


}  // namespace ringproxy
