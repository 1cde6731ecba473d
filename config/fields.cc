#include "config/fields.h"

#include <algorithm>
#include <limits>

namespace ringproxy::config_internal {

namespace {

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Optimal string alignment distance, ignoring ASCII case: insertions, deletions,
// substitutions and swaps of two neighbours each cost one, the typos people make.
size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t width = b.size() + 1;
  std::vector<size_t> d((a.size() + 1) * width);
  auto at = [&](size_t i, size_t j) -> size_t& { return d[i * width + j]; };
  for (size_t i = 0; i <= a.size(); ++i) at(i, 0) = i;
  for (size_t j = 0; j <= b.size(); ++j) at(0, j) = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]);
      at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (same ? 0 : 1)});
      if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
          ascii_lower(a[i - 2]) == ascii_lower(b[j - 1])) {
        at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
      }
    }
  }
  return at(a.size(), b.size());
}

}  // namespace

void Errors::add(const toml::source_position& at, std::string key, std::string message) {
  // toml++ fills every position of a parsed document; 0 would only come from a node
  // built in code, and 1:1 is the least surprising place to point then.
  errors_.push_back(ConfigError{file_, std::max<uint32_t>(at.line, 1),
                                std::max<uint32_t>(at.column, 1), std::move(key),
                                std::move(message)});
}

bool Errors::any_at_or_below(std::string_view key) const {
  return std::ranges::any_of(errors_, [key](const ConfigError& e) {
    return e.key == key || (e.key.starts_with(key) && e.key.size() > key.size() &&
                            (e.key[key.size()] == '.' || e.key[key.size()] == '['));
  });
}

std::vector<ConfigError> Errors::take() && {
  std::ranges::stable_sort(errors_, [](const ConfigError& a, const ConfigError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(errors_);
}

std::string_view type_phrase(toml::node_type type) {
  switch (type) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date/time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string quoted(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string unknown_message(std::string_view what, std::string_view name,
                            const std::vector<std::string_view>& candidates) {
  std::string_view best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string_view candidate : candidates) {
    const size_t distance = edit_distance(name, candidate);
    if (distance <= std::max<size_t>(1, candidate.size() / 3) && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  std::string message = "unknown " + std::string(what);
  if (!best.empty()) message += " (did you mean '" + std::string(best) + "'?)";
  return message;
}

void type_error(Errors& errors, const toml::node& node, const std::string& key,
                std::string_view expected) {
  errors.add(node.source().begin, key,
             "expected " + std::string(expected) + ", got " + std::string(type_phrase(node.type())));
}

std::optional<int64_t> get_integer(Errors& errors, const toml::node& node, const std::string& key) {
  if (const auto* value = node.as_integer()) return value->get();
  type_error(errors, node, key, "an integer");
  return std::nullopt;
}

std::optional<double> get_number(Errors& errors, const toml::node& node, const std::string& key) {
  if (const auto* value = node.as_floating_point()) return value->get();
  if (const auto* value = node.as_integer()) return static_cast<double>(value->get());
  type_error(errors, node, key, "a number");
  return std::nullopt;
}

std::optional<bool> get_boolean(Errors& errors, const toml::node& node, const std::string& key) {
  if (const auto* value = node.as_boolean()) return value->get();
  type_error(errors, node, key, "a boolean");
  return std::nullopt;
}

const std::string* get_string(Errors& errors, const toml::node& node, const std::string& key) {
  if (const auto* value = node.as_string()) return &value->get();
  type_error(errors, node, key, "a string");
  return nullptr;
}

void read_address_array(Errors& errors, const toml::node& node, const std::string& key, std::string_view expected,
                        TextParser<Address> parse, std::vector<Address>* out) {
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    type_error(errors, node, key, expected);
    return;
  }
  out->clear();
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& item = *array->get(i);
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    const std::string* text = get_string(errors, item, item_key);
    if (text == nullptr) continue;
    std::string why;
    if (std::optional<Address> address = parse(*text, &why)) {
      out->push_back(std::move(*address));
    } else {
      errors.add(item.source().begin, item_key, std::move(why));
    }
  }
}

std::optional<std::string> any_text(std::string_view text, std::string* /*why*/) {
  return std::string(text);
}

bool is_tchar(char c) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         kSpecials.find(c) != std::string_view::npos;
}

bool is_token(std::string_view text) { return !text.empty() && std::ranges::all_of(text, is_tchar); }

void for_each_table(Errors& errors, const toml::node& node, const std::string& key, std::string_view expected,
                    const std::function<void(const toml::table& table, const std::string& item, size_t index)>& each) {
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    type_error(errors, node, key, expected);
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = (*array)[i];
    const std::string item = key + "[" + std::to_string(i) + "]";
    if (const toml::table* table = element.as_table()) {
      each(*table, item, i);
    } else {
      type_error(errors, element, item, "a table");
    }
  }
}

}  // namespace ringproxy::config_internal
