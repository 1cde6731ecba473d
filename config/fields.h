// What every section of the config file is read with (DESIGN.md "The rest of the house":
// one file per section, all sharing the helpers that report FILE:LINE:COLUMN): the error
// collector, typed reads of TOML values, and Field tables that say which keys a section
// has and how each is read. Internal to config/: config.cc and the section files
// (tls.cc) include it; nothing outside config/ should.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "config/config.h"

namespace ringproxy::config_internal {

// ---------------------------------------------------------------------------------
// Errors and their wording

// Collects every error of one load. Positions come from toml++ (1-based line and
// column of the key or value concerned); take() returns them in file order.
class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}

  void add(const toml::source_position& at, std::string key, std::string message);
  void add_whole_file(std::string message) { add({1, 1}, "", std::move(message)); }

  // True if an error was recorded for `key` or for anything below it ("health"
  // covers "health.rise"; "backend[1]" covers "backend[1].name").
  bool any_at_or_below(std::string_view key) const;

  // Sorted by position; errors at one position keep the order they were found in.
  std::vector<ConfigError> take() &&;

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
};

// The TOML type with its article, for "expected an integer, got a string".
std::string_view type_phrase(toml::node_type type);

// Text from the file, made safe to print inside double quotes on one line.
std::string quoted(std::string_view text);

// "unknown key (did you mean 'listen'?)". A candidate is suggested when at most a
// third of it (at least one character) must change: "lisen" -> "listen",
// "timeout" -> "timeout_ms", but "rise" is never offered for "fall". Ties go to the
// earlier candidate.
std::string unknown_message(std::string_view what, std::string_view name,
                            const std::vector<std::string_view>& candidates);

// Where a value sits, as kept in the Config for messages made after loading.
inline SourcePos source_pos(const toml::node& node) {
  const toml::source_position at = node.source().begin;
  return SourcePos{at.line, at.column};
}

// ---------------------------------------------------------------------------------
// Typed reads: each returns the value when the node has the wanted type, and
// otherwise records "expected X, got Y" at the value and returns nothing.

void type_error(Errors& errors, const toml::node& node, const std::string& key,
                std::string_view expected);
std::optional<int64_t> get_integer(Errors& errors, const toml::node& node, const std::string& key);
std::optional<double> get_number(Errors& errors, const toml::node& node, const std::string& key);
std::optional<bool> get_boolean(Errors& errors, const toml::node& node, const std::string& key);
const std::string* get_string(Errors& errors, const toml::node& node, const std::string& key);

// ---------------------------------------------------------------------------------
// Text values. Each parser has parse_address's shape: the value, or nothing and a
// complete message in *why (which the caller prefixes with the key and position).

template <class T>
using TextParser = std::optional<T> (*)(std::string_view text, std::string* why);

// An array of strings at `key` (otherwise "expected `expected`"), each parsed with
// `parse` into `out` (replaced), a failure reported at its item ("key[2]").
void read_address_array(Errors& errors, const toml::node& node, const std::string& key, std::string_view expected,
                        TextParser<Address> parse, std::vector<Address>* out);

std::optional<std::string> any_text(std::string_view text, std::string* why);

// An array of tables at `key` ([[pool]], backends = [{...}, ...]): `each` is called with
// every element that is a table and its key ("key[2]") and index; an element that is
// not a table is an error at it, and a `node` that is not an array one at it
// ("expected `expected`").
void for_each_table(Errors& errors, const toml::node& node, const std::string& key, std::string_view expected,
                    const std::function<void(const toml::table& table, const std::string& item, size_t index)>& each);

// RFC 9110 section 5.6.2 tchar, and token: header names, cookie names (RFC 6265 section
// 4.1.1), Via's pseudonym.
bool is_tchar(char c);
bool is_token(std::string_view text);

// ---------------------------------------------------------------------------------
// The schema: for each section, its keys and how each is read. The unknown-key check
// and its suggestions use the same lists, so a key added here is known everywhere.

template <class Section>
struct Field {
  std::string_view name;
  // Reads `node` (the value of key path `key`) into `out`, or records errors.
  std::function<void(Errors&, const toml::node& node, const std::string& key, Section& out)> read;
};

template <class Section>
Field<Section> integer_field(std::string_view name, uint32_t Section::*member, int64_t min,
                             int64_t max) {
  assert(0 <= min && min <= max && max <= std::numeric_limits<uint32_t>::max());
  return {name, [member, min, max](Errors& errors, const toml::node& node, const std::string& key,
                                   Section& out) {
            const std::optional<int64_t> value = get_integer(errors, node, key);
            if (!value) return;
            if (*value < min || *value > max) {
              errors.add(node.source().begin, key,
                         "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                             ", got " + std::to_string(*value));
              return;
            }
            out.*member = static_cast<uint32_t>(*value);
          }};
}

template <class Section>
Field<Section> boolean_field(std::string_view name, bool Section::*member) {
  return {name, [member](Errors& errors, const toml::node& node, const std::string& key, Section& out) {
            if (const std::optional<bool> value = get_boolean(errors, node, key)) out.*member = *value;
          }};
}

template <class Section, class T>
Field<Section> text_field(std::string_view name, T Section::*member, TextParser<T> parse) {
  return {name, [member, parse](Errors& errors, const toml::node& node, const std::string& key,
                                Section& out) {
            const std::string* text = get_string(errors, node, key);
            if (text == nullptr) return;
            std::string why;
            if (std::optional<T> value = parse(*text, &why)) {
              out.*member = std::move(*value);
            } else {
              errors.add(node.source().begin, key, std::move(why));
            }
          }};
}

template <class Section>
std::vector<std::string_view> names_of(const std::vector<Field<Section>>& fields) {
  std::vector<std::string_view> names;
  for (const Field<Section>& field : fields) names.push_back(field.name);
  return names;
}

// Reads every key of `table` into `out`; keys not in `fields` are errors at the key.
template <class Section>
void read_fields(Errors& errors, const toml::table& table, const std::string& prefix,
                 const std::vector<Field<Section>>& fields, Section& out) {
  for (auto&& [name, node] : table) {
    const std::string key = prefix + "." + std::string(name.str());
    const auto field = std::ranges::find(fields, name.str(), &Field<Section>::name);
    if (field == fields.end()) {
      errors.add(name.source().begin, key, unknown_message("key", name.str(), names_of(fields)));
      continue;
    }
    field->read(errors, node, key, out);
  }
}

// A table of keys at `key` ([proxy], ring = { ... }) read with `fields` into `out`; a
// `node` that is not a table is an error at it.
template <class Section>
void read_section(Errors& errors, const toml::node& node, const std::string& key,
                  const std::vector<Field<Section>>& fields, Section& out) {
  if (const toml::table* table = node.as_table()) {
    read_fields(errors, *table, key, fields, out);
  } else {
    type_error(errors, node, key, "a table");
  }
}

}  // namespace ringproxy::config_internal
