#include "http/h1/field_spans.h"

namespace ringproxy::h1 {

bool append_field_piece(std::vector<FieldSpan>& fields, bool value, const char* base, const char* at,
                        size_t len, uint32_t* head_bytes) {
  *head_bytes += static_cast<uint32_t>(len);
  // An empty value comes as a piece of no bytes, which llhttp may place at the start of
  // the next line: it carries nothing, so it is no continuation (a request with
  // "X-Forwarded-For: " was refused as obs-fold).
  if (value && len == 0) return true;
  if (value) {
    // llhttp accepts obs-fold (a line starting with SP or HTAB continues the value) and
    // hands the value in pieces around the line break; a span over them would carry the
    // CRLF into the head we forward and end it early. A piece is a continuation when
    // only SP/HTAB separate it from a line feed.
    const char* q = at;
    while (q > base && (q[-1] == ' ' || q[-1] == '\t')) --q;
    if (q > base && q[-1] == '\n') return false;
  }
  const auto off = static_cast<uint32_t>(at - base);
  // llhttp hands a token in pieces when it spans reads; the pieces are contiguous in
  // the buffer because it is never compacted while a head is being read.
  if (!value) {
    if (fields.empty() || fields.back().value.len != 0 || (fields.back().name.off + fields.back().name.len != off)) {
      fields.push_back({{off, static_cast<uint32_t>(len)}, {off, 0}});
    } else {
      fields.back().name.len += static_cast<uint32_t>(len);
    }
  } else {
    FieldSpan& f = fields.back();
    if (f.value.len == 0) f.value.off = off;
    f.value.len += static_cast<uint32_t>(len);
  }
  return true;
}

}  // namespace ringproxy::h1
