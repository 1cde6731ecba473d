// Several tiers behind one instance (SPEC "Several tiers: pools, routes and listeners",
// issue 15): [[pool]], [[route]] and [[listener]], read and checked together. Internal
// to config/.
#pragma once

#include <toml++/toml.h>

#include "config/config.h"
#include "config/fields.h"

namespace ringproxy::config_internal {

// Reads root's [[pool]], [[route]] and [[listener]] into `config`, whose top-level
// sections must be read already (a pool's missing keys are theirs). Errors at their
// keys; `warnings` gets what is valid but surely not meant (a route an earlier one
// covers, a pool with no node and no source, a pool no route or listener names).
void read_tiers(Errors& errors, Errors& warnings, const toml::table& root, Config& config);

// Letters, digits, '-' and '_', 1..64 of them (it goes into admin URLs and metric labels).
bool is_valid_pool_name(std::string_view name);

}  // namespace ringproxy::config_internal
