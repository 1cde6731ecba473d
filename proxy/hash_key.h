// The bytes of a request that the ring hashes (SPEC "hash_key"). No allocation.
#pragma once

#include <span>
#include <string_view>

#include "config/config.h"
#include "http/message.h"

namespace ringproxy {

// The bytes of the request that SPEC's hash_key selects. A missing header, cookie or
// query parameter falls back to the URI, as does an empty one, and so does a request
// without a verified client certificate for client_subject. The result views `target`,
// `headers`, `client_ip` or `client_subject`.
std::string_view select_hash_key(const HashKey& how, std::string_view target,
                                 std::span<const HeaderView> headers, std::string_view client_ip,
                                 std::string_view client_subject = {});


}  // namespace ringproxy
