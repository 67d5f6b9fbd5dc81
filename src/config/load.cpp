// The composed settings table and everything it drives: the YAML file, the GOREGO_*
// environment, the flags, --help, --print-config (to_yaml) and validate().
#include <unistd.h>  // environ

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include "settings.hpp"

namespace gorego {
namespace settings {
namespace {

constexpr std::string_view kEnvPrefix = "GOREGO_";
constexpr std::string_view kConfigEnv = "GOREGO_CONFIG";
/// Flags of the loader itself, which no setting may take.
constexpr std::array<std::string_view, 4> kReservedFlags{"config", "print-config", "help", "h"};

constexpr std::string_view section_of(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : key.substr(0, dot);
}

constexpr std::string_view leaf_of(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

std::string env_name(std::string_view key) {
  std::string name(kEnvPrefix);
  for (const char c : key) {
    name += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

/// Kubernetes injects GOREGO_SERVICE_HOST, GOREGO_PORT_50051_TCP_ADDR and the like into
/// every pod when a Service is named "gorego"; they are not settings and must not be
/// mistaken for typos. compose() makes sure no setting's variable looks like one.
bool is_kubernetes_service_link(std::string_view name) {
  const std::string_view rest = name.substr(kEnvPrefix.size());
  return rest.starts_with("SERVICE_") || rest == "PORT" || rest.starts_with("PORT_");
}

/// The inconsistencies of a composed table: keys, variables or flags given twice, a key that
/// is also a section, sections nested deeper than one level (to_yaml() writes one).
std::vector<std::string> table_problems(const std::vector<Setting>& table) {
  std::vector<std::string> problems;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const Setting& a = table[i];
    const std::string env = env_name(a.key);
    if (a.key.empty() || section_of(a.key).find('.') != std::string_view::npos) {
      problems.push_back(fmt::format("key \"{}\" is not KEY or SECTION.KEY", a.key));
    }
    if (is_kubernetes_service_link(env)) {
      problems.push_back(fmt::format("{} looks like a Kubernetes service link", env));
    }
    if (std::any_of(table.begin(), table.end(),
                    [&](const Setting& b) { return section_of(b.key) == a.key; })) {
      problems.push_back(fmt::format("\"{}\" is a key and a section", a.key));
    }
    if (std::find(kReservedFlags.begin(), kReservedFlags.end(), a.flag) != kReservedFlags.end()) {
      problems.push_back(fmt::format("key \"{}\" takes the loader's flag --{}", a.key, a.flag));
    }
    for (std::size_t j = i + 1; j < table.size(); ++j) {
      const Setting& b = table[j];
      if (a.key == b.key) problems.push_back(fmt::format("key \"{}\" is defined twice", a.key));
      if (a.key != b.key && env == env_name(b.key)) {
        problems.push_back(fmt::format("keys \"{}\" and \"{}\" share {}", a.key, b.key, env));
      }
      if (!a.flag.empty() && a.flag == b.flag) {
        problems.push_back(
            fmt::format("keys \"{}\" and \"{}\" share the flag --{}", a.key, b.key, a.flag));
      }
    }
  }
  return problems;
}

/// The areas' tables as one: the top-level keys first, then the keys of each section
/// together, sections in the order they first appear (the order of to_yaml() and --help).
/// An inconsistent table is a bug in gorego, found by the first test that loads a config.
std::vector<Setting> compose(std::span<const Area> areas) {
  std::vector<Setting> all;
  std::vector<std::string_view> sections{""};
  for (const Area& area : areas) {
    for (const Setting& s : area.settings) {
      all.push_back(s);
      const std::string_view section = section_of(s.key);
      if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
        sections.push_back(section);
      }
    }
  }
  std::vector<Setting> table;
  for (const std::string_view section : sections) {
    for (const Setting& s : all) {
      if (section_of(s.key) == section) table.push_back(s);
    }
  }
  if (const std::vector<std::string> problems = table_problems(table); !problems.empty()) {
    fmt::print(stderr, "gorego: bug: inconsistent settings table: {}\n", fmt::join(problems, "; "));
    std::abort();
  }
  return table;
}

const std::array<Area, 7>& areas() {
  static const std::array<Area, 7> kAreas{server_area(),    storage_area(), telemetry_area(), remote_area(),
                                          execution_area(), http_area(),    security_area()};
  return kAreas;
}

const std::vector<Setting>& all_settings() {
  static const std::vector<Setting> kTable = compose(areas());
  return kTable;
}

const Setting* find_by_key(std::string_view key) {
  for (const Setting& s : all_settings()) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

const Setting* find_by_env(std::string_view name) {
  for (const Setting& s : all_settings()) {
    if (env_name(s.key) == name) return &s;
  }
  return nullptr;
}

bool is_section(std::string_view path) {
  return std::any_of(all_settings().begin(), all_settings().end(),
                     [&](const Setting& s) { return section_of(s.key) == path; });
}

// ---- YAML file ----

std::string_view node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null: return "empty";
    case YAML::NodeType::Scalar: return "a single value";
    case YAML::NodeType::Undefined: break;
  }
  return "undefined";
}

std::string position(const YAML::Mark& mark) {
  if (mark.is_null()) return {};
  return fmt::format(" (line {}, column {})", mark.line + 1, mark.column + 1);
}

/// The Value of a setting in the file, with the position of each list element or map entry.
struct YamlValue {
  Value value;
  std::vector<YAML::Mark> marks;
};

/// Reads `node`, the value of `s` (`where`: file and position of its key), into a Value of
/// the setting's shape; INVALID_ARGUMENT when the node or an element has the wrong kind.
Result<YamlValue> yaml_value(const Setting& s, const YAML::Node& node, const std::string& file,
                             const std::string& where) {
  const auto wrong_kind = [&](std::string_view expected, std::string_view none) {
    return invalid(fmt::format("config key \"{}\" in {} must be {}, not {}{}", s.key, where,
                               expected, node_kind(node), node.IsNull() ? none : ""));
  };
  /// An element that must be a single value; a mapping is most often an unquoted "a: b".
  const auto not_single = [&](const YAML::Node& element, const std::string& name) {
    return invalid(fmt::format("config key \"{}\" in {}{}: {} must be a single value, not {}{}",
                               s.key, file, position(element.Mark()), name, node_kind(element),
                               element.IsMap() ? " (quote a value that contains \": \")" : ""));
  };
  YamlValue out;
  switch (s.shape) {
    case Shape::kScalar:
      if (!node.IsScalar()) return wrong_kind("a single value", "");
      out.value = node.Scalar();
      return out;
    case Shape::kList: {
      if (!node.IsSequence()) return wrong_kind("a list", " (write [] for none)");
      List list;
      for (const YAML::Node& element : node) {
        if (!element.IsScalar()) {
          return not_single(element, fmt::format("{}[{}]", s.key, list.size()));
        }
        list.push_back(element.Scalar());
        out.marks.push_back(element.Mark());
      }
      out.value = std::move(list);
      return out;
    }
    case Shape::kMap: {
      if (!node.IsMap()) return wrong_kind("a mapping of KEY: VALUE", " (write {} for none)");
      Map map;
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          return invalid(fmt::format("config key \"{}\" in {}{} has a key that is not a name",
                                     s.key, file, position(entry.first.Mark())));
        }
        if (!entry.second.IsScalar()) {
          return not_single(entry.second, fmt::format("{}[\"{}\"]", s.key, entry.first.Scalar()));
        }
        map.emplace_back(entry.first.Scalar(), entry.second.Scalar());
        out.marks.push_back(entry.first.Mark());
      }
      out.value = std::move(map);
      return out;
    }
  }
  return invalid(fmt::format("config key \"{}\" has an unknown shape", s.key));
}

/// Applies the settings of `node` (the mapping at `path`, "" for the root) to `config`.
Status apply_yaml_map(const YAML::Node& node, const std::string& path, const std::string& file,
                      std::set<std::string>& seen, Config& config) {
  for (const auto& entry : node) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return invalid(fmt::format("config file {} has a key that is not a name{}", file,
                                 position(key_node.Mark())));
    }
    const std::string key = path.empty() ? key_node.Scalar() : path + "." + key_node.Scalar();
    const std::string where = fmt::format("{}{}", file, position(key_node.Mark()));
    if (!seen.insert(key).second) {
      return invalid(fmt::format("config key \"{}\" appears twice in {}", key, where));
    }
    if (const Setting* setting = find_by_key(key)) {
      auto parsed = yaml_value(*setting, value, file, where);
      if (!parsed) return parsed.error();
      std::optional<std::size_t> bad;
      const Status status = setting->assign(setting->key, parsed->value, config, &bad);
      if (!status.ok()) {
        const YAML::Mark mark = bad ? parsed->marks.at(*bad) : value.Mark();
        return in_context(status,
                          fmt::format("config key \"{}\" in {}{}", key, file, position(mark)));
      }
    } else if (is_section(key)) {
      if (value.IsNull()) continue;  // "storage:" with nothing under it
      if (!value.IsMap()) {
        return invalid(fmt::format("config key \"{}\" in {} must be a mapping of keys, not {}", key,
                                   where, node_kind(value)));
      }
      GOREGO_RETURN_IF_ERROR(apply_yaml_map(value, key, file, seen, config));
    } else {
      return invalid(fmt::format("unknown config key \"{}\" in {}", key, where));
    }
  }
  return ok_status();
}

Status apply_yaml_file(const std::string& file, Config& config) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) {
    return invalid(fmt::format("cannot read config file \"{}\": it is a directory", file));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return invalid(fmt::format("cannot read config file \"{}\": {}", file, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return invalid(fmt::format("cannot read config file \"{}\": {}", file, std::strerror(errno)));
  }
  try {
    const YAML::Node root = YAML::Load(text.str());
    if (root.IsNull()) return ok_status();  // an empty file changes nothing
    if (!root.IsMap()) {
      return invalid(fmt::format("config file \"{}\" must be a mapping of keys, not {}", file,
                                 node_kind(root)));
    }
    std::set<std::string> seen;
    return apply_yaml_map(root, "", file, seen, config);
  } catch (const YAML::Exception& e) {
    return invalid(
        fmt::format("cannot parse config file \"{}\"{}: {}", file, position(e.mark), e.msg));
  }
}

// ---- command line ----

/// A default as --help shows it; an empty one as "" so the column is not blank.
std::string shown_default(const Setting& s, const Config& defaults) {
  std::string text = value_to_text(s.show(defaults));
  return text.empty() ? "\"\"" : text;
}

std::string settings_footer() {
  const Config defaults;
  std::string out =
      "Every setting can be given in the YAML file named by --config FILE (or GOREGO_CONFIG),\n"
      "in an environment variable, and some by a flag. Later sources win:\n"
      "  defaults < config file < environment < flags\n"
      "A list is a YAML sequence in the file and A,B in the environment or a flag (a list\n"
      "flag may be repeated); a map is a YAML mapping in the file and K=V,K2=V2 otherwise.\n"
      "Unknown config keys and unknown GOREGO_* environment variables are errors.\n\n"
      "Settings (config key, environment variable, default):\n";
  for (const Setting& s : all_settings()) {
    out += fmt::format("  {:<31}{:<38}{}\n      {}\n", s.key, env_name(s.key),
                       shown_default(s, defaults), s.help);
  }
  return out;
}

struct CommandLine {
  std::optional<std::string> config_file;
  bool print_config = false;
  /// (setting, value) in the order of the table, for the flags that were given.
  std::vector<std::pair<const Setting*, Value>> values;
  std::optional<std::string> help;
};

Result<CommandLine> parse_command_line(int argc, const char* const* argv) {
  const Config defaults;
  const std::vector<Setting>& table = all_settings();
  CLI::App app{"gorego: a Remote Execution API v2 remote cache server.", "gorego"};
  app.footer(settings_footer());

  CommandLine result;
  std::string config_file;
  CLI::Option* config_option =
      app.add_option("--config", config_file, "YAML config file (also GOREGO_CONFIG)")
          ->type_name("FILE");
  app.add_flag("--print-config", result.print_config,
               "print the effective config as YAML and exit");

  // Every flag takes one value per occurrence; a scalar keeps the last, a list or map all.
  std::vector<std::vector<std::string>> values(table.size());
  std::vector<CLI::Option*> options(table.size(), nullptr);
  for (std::size_t i = 0; i < table.size(); ++i) {
    const Setting& s = table[i];
    if (s.flag.empty()) continue;
    const bool scalar = s.shape == Shape::kScalar;
    options[i] = app.add_option(fmt::format("--{}", s.flag), values[i],
                                fmt::format("{} [{}, default {}]", s.help, env_name(s.key),
                                            shown_default(s, defaults)))
                     ->type_name(std::string(s.value_name))
                     ->expected(1)
                     ->allow_extra_args(false)
                     ->multi_option_policy(scalar ? CLI::MultiOptionPolicy::TakeLast
                                                  : CLI::MultiOptionPolicy::TakeAll);
  }

  static constexpr std::array<const char*, 1> kNoArgs{"gorego"};
  try {
    if (argc < 1 || argv == nullptr) {
      app.parse(static_cast<int>(kNoArgs.size()), kNoArgs.data());
    } else {
      app.parse(argc, argv);
    }
  } catch (const CLI::CallForHelp&) {
    result.help = app.help();
    return result;
  } catch (const CLI::Error& e) {
    return invalid(fmt::format("command line: {}", e.what()));
  }

  if (config_option->count() > 0) result.config_file = config_file;
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (options[i] == nullptr || options[i]->count() == 0) continue;
    auto value = value_from_text(table[i].key, table[i].shape, values[i]);
    if (!value) return in_context(value.error(), fmt::format("flag --{}", table[i].flag));
    result.values.emplace_back(&table[i], *std::move(value));
  }
  return result;
}

/// Emits a Value as a YAML scalar, sequence or mapping; empty ones in flow style ([] and {}).
void emit(YAML::Emitter& out, const Value& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    out << *text;
  } else if (const auto* list = std::get_if<List>(&value)) {
    if (list->empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const std::string& element : *list) out << element;
    out << YAML::EndSeq;
  } else {
    const Map& map = std::get<Map>(value);
    if (map.empty()) out << YAML::Flow;
    out << YAML::BeginMap;
    for (const auto& [k, v] : map) out << YAML::Key << k << YAML::Value << v;
    out << YAML::EndMap;
  }
}

}  // namespace
}  // namespace settings

// ---- public API ----

using settings::all_settings;
using settings::in_context;
using settings::invalid;
using settings::Setting;

Status validate(const Config& config) {
  // A value is valid when it survives its own parser: one rule per setting, kept in one place.
  for (const Setting& s : all_settings()) {
    Config scratch;
    const Status status = s.assign(s.key, s.render(config), scratch, nullptr);
    if (!status.ok()) return in_context(status, fmt::format("config key \"{}\"", s.key));
  }
  for (const settings::Area& area : settings::areas()) {
    if (area.validate != nullptr) GOREGO_RETURN_IF_ERROR(area.validate(config));
  }
  return ok_status();
}

std::string to_yaml(const Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string_view section;
  for (const Setting& s : all_settings()) {  // grouped by section, top-level keys first
    if (settings::section_of(s.key) != section) {
      if (!section.empty()) out << YAML::EndMap;
      section = settings::section_of(s.key);
      out << YAML::Key << std::string(section) << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << std::string(settings::leaf_of(s.key)) << YAML::Value;
    settings::emit(out, s.show(config));
  }
  if (!section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

Environment current_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace_back(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  return env;
}

Result<LoadOutcome> load_config(int argc, const char* const* argv, const Environment& env) {
  using settings::env_name;
  auto command_line = settings::parse_command_line(argc, argv);
  if (!command_line) return command_line.error();
  if (command_line->help) return LoadOutcome{Config{}, std::move(command_line->help)};

  // Check every GOREGO_* name before using any, so a typo is never silently ignored.
  std::optional<std::string> config_file = command_line->config_file;
  std::optional<std::string> config_env;
  std::vector<std::pair<const Setting*, const std::string*>> env_values;
  for (const auto& [name, value] : env) {
    if (!name.starts_with(settings::kEnvPrefix) || settings::is_kubernetes_service_link(name)) {
      continue;
    }
    if (name == settings::kConfigEnv) {
      config_env = value;
    } else if (const Setting* setting = settings::find_by_env(name)) {
      env_values.emplace_back(setting, &value);
    } else {
      std::string known(settings::kConfigEnv);
      for (const Setting& s : all_settings()) known += ", " + env_name(s.key);
      return invalid(fmt::format("unknown environment variable {} (known: {})", name, known));
    }
  }
  if (!config_file) config_file = std::move(config_env);

  Config config;
  if (config_file) GOREGO_RETURN_IF_ERROR(settings::apply_yaml_file(*config_file, config));
  for (const auto& [setting, text] : env_values) {
    const std::string context = fmt::format("environment variable {}", env_name(setting->key));
    auto value = settings::value_from_text(setting->key, setting->shape, {text, 1});
    if (!value) return in_context(value.error(), context);
    const Status status = setting->assign(setting->key, *value, config, nullptr);
    if (!status.ok()) return in_context(status, context);
  }
  for (const auto& [setting, value] : command_line->values) {
    const Status status = setting->assign(setting->key, value, config, nullptr);
    if (!status.ok()) return in_context(status, fmt::format("flag --{}", setting->flag));
  }
  GOREGO_RETURN_IF_ERROR(validate(config));

  if (command_line->print_config) return LoadOutcome{config, to_yaml(config)};
  return LoadOutcome{std::move(config), std::nullopt};
}

}  // namespace gorego
