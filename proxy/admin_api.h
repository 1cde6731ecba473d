// The admin endpoint's routes (SPEC "Admin HTTP endpoint"): JSON in and out, errors
// as {"error": "..."} with a 4xx status; mutations need the bearer token when one is
// set. Runs on the control loop; reads and changes the Server's config and routing.
#pragma once

#include <string>

#include "proxy/admin_server.h"

namespace ringproxy {

class Server;
struct Routing;

AdminHandler make_admin_handler(Server& server);

// Constant-time comparison of a presented token with the configured one.
bool token_matches(std::string_view presented, std::string_view expected);

// The HTML status page: nodes, states, shares, rates and an SVG drawing of the ring.
// Self-contained (no external assets); refreshes itself every 2 s.
std::string status_page(const Routing& routing, double uptime_s);

}  // namespace ringproxy
