// A head's fields as llhttp hands them: offsets into the connection's read buffer, not
// pointers, so the buffer may grow (realloc) while a head is read. The parsers of
// http/h1 collect them; views are made once the head is complete (HeaderView).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace ringproxy::h1 {

struct Span {
  uint32_t off = 0, len = 0;
  std::string_view in(const char* base) const { return {base + off, len}; }
};

struct FieldSpan {
  Span name, value;
};

// Adds one piece of a field name (`value` false) or value that llhttp read at `at`
// (`base`: the start of the buffer), counting its bytes into `*head_bytes`. False when
// a value piece continues an obs-fold line, which the caller refuses (RFC 9112 5.2: a
// server may answer 400, a proxy must refuse it in a response, 502).
bool append_field_piece(std::vector<FieldSpan>& fields, bool value, const char* base, const char* at,
                        size_t len, uint32_t* head_bytes);

}  // namespace ringproxy::h1
