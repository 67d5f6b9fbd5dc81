#include "access_control.hpp"

#include <crypt.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include <gorego/core/files.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/stop.hpp>
#include <gorego/hash/sha256.hpp>

namespace gorego::auth {

namespace {

// A known principal without rights of its own may read and upload verified blobs, but not
// write ActionResults (which every build trusts): those need an explicit grant.
constexpr Rights kDefaultAuthenticated = Rights(Right::kRead) | Right::kWriteCas;
constexpr std::size_t kMaxRemembered = 10000;  // basic credentials, right and wrong
constexpr int kMaxBcrypts = 2;                 // password checks running at once
constexpr std::string_view kAnonymous = "anonymous";

/// The names auth.rights gives a meaning of their own; no credential may claim them.
bool reserved(std::string_view name) { return name == kAnonymous || name == "authenticated"; }

std::string sha256_key(std::string_view text) {
  const Hash256 h = Sha256::of(text);
  return {reinterpret_cast<const char*>(h.data()), h.size()};
}

/// The lines of `text` without comments ('#' first) and blank lines, with their numbers.
std::vector<std::pair<int, std::string_view>> entries_of(std::string_view text) {
  std::vector<std::pair<int, std::string_view>> out;
  int number = 0;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    out.emplace_back(number, line);
  }
  return out;
}

bool visible_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; });
}

std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

struct AccessControl::State {
  AccessControl::Stamps stamps;  // of the files read
  std::map<std::string, Rights, std::less<>> rights;  // from auth.rights, without the reserved names
  Rights authenticated = kDefaultAuthenticated;
  std::shared_ptr<const Principal> anonymous;
  std::unordered_map<std::string, std::shared_ptr<const Principal>> by_token;  // SHA-256 of the token
  struct User {
    std::string hash;  // bcrypt
    std::shared_ptr<const Principal> principal;
  };
  std::unordered_map<std::string, User> users;
  std::unordered_map<std::string, std::shared_ptr<const Principal>> named;  // every name known up front

  // Basic credentials checked with bcrypt (SHA-256 of the decoded USER:PASSWORD).
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, std::shared_ptr<const Principal>> remembered;
  mutable std::unordered_set<std::string> refused;  // basic credentials found wrong

  [[nodiscard]] std::shared_ptr<const Principal> principal(const std::string& name) const {
    if (auto it = named.find(name); it != named.end()) return it->second;
    const auto r = rights.find(name);
    return std::make_shared<const Principal>(Principal{name, r != rights.end() ? r->second : authenticated});
  }
};

namespace {

using State = AccessControl::State;

/// Fills the rights of `s` from auth.rights.
void set_rights(State& s, const AuthSettings& a, bool enabled) {
  s.anonymous = std::make_shared<const Principal>(Principal{std::string(kAnonymous), enabled ? Rights() : Rights::all()});
  for (const auto& [name, text] : a.rights) {
    auto r = parse_rights("auth.rights." + name, text);
    if (!r) continue;  // validate() already refused it
    if (name == kAnonymous) {
      s.anonymous = std::make_shared<const Principal>(Principal{std::string(kAnonymous), *r});
    } else if (name == "authenticated") {
      s.authenticated = *r;
    } else {
      s.rights.emplace(name, *r);
    }
  }
}

Status read_tokens(State& s, const std::filesystem::path& file) {
  auto text = read_whole_file(file, "auth.tokens_file");
  if (!text) return text.error();
  for (const auto& [number, line] : entries_of(*text)) {
    const std::size_t space = line.find_first_of(" \t");
    const std::string_view name = line.substr(0, space);
    std::string_view token = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    if (name.empty() || token.empty() || token.find_first_of(" \t") != std::string_view::npos) {
      return error(Code::kInvalidArgument,
                   "auth.tokens_file \"{}\" line {}: expected \"PRINCIPAL TOKEN\" (the line is not shown)",
                   file.string(), number);
    }
    if (!visible_ascii(name) || name.find(':') != std::string_view::npos || !visible_ascii(token)) {
      return error(Code::kInvalidArgument,
                   "auth.tokens_file \"{}\" line {}: the principal and the token must be visible ASCII, the "
                   "principal without ':' (the line is not shown)",
                   file.string(), number);
    }
    if (reserved(name)) {
      return error(Code::kInvalidArgument, "auth.tokens_file \"{}\" line {}: \"{}\" is a reserved principal name",
                   file.string(), number, name);
    }
    const std::string key(name);
    auto principal = s.principal(key);
    s.named.emplace(key, principal);
    if (!s.by_token.emplace(sha256_key(token), principal).second) {
      return error(Code::kInvalidArgument, "auth.tokens_file \"{}\" line {}: this token is already given to another line",
                   file.string(), number);
    }
  }
  return {};
}

Status read_htpasswd(State& s, const std::filesystem::path& file) {
  auto text = read_whole_file(file, "auth.htpasswd_file");
  if (!text) return text.error();
  for (const auto& [number, line] : entries_of(*text)) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return error(Code::kInvalidArgument, "auth.htpasswd_file \"{}\" line {}: expected \"USER:HASH\"", file.string(),
                   number);
    }
    const std::string user(line.substr(0, colon));
    const std::string_view hash = line.substr(colon + 1);
    if (!(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) || hash.size() != 60) {
      return error(Code::kInvalidArgument,
                   "auth.htpasswd_file \"{}\" line {}: the hash of user \"{}\" is not bcrypt ($2y$/$2b$, 60 "
                   "characters); make it with htpasswd -B",
                   file.string(), number, user);
    }
    if (reserved(user)) {
      return error(Code::kInvalidArgument, "auth.htpasswd_file \"{}\" line {}: \"{}\" is a reserved principal name",
                   file.string(), number, user);
    }
    auto principal = s.principal(user);
    s.named.emplace(user, principal);
    if (!s.users.emplace(user, State::User{std::string(hash), principal}).second) {
      return error(Code::kInvalidArgument, "auth.htpasswd_file \"{}\" line {}: user \"{}\" is listed twice",
                   file.string(), number, user);
    }
  }
  return {};
}

/// A bcrypt hash of cost 10 of nothing anyone knows: checked against for unknown users.
const std::string& dummy_hash() {
  static const std::string h = [] {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data data {};
    if (crypt_gensalt_rn("$2b$", 10, nullptr, 0, salt, sizeof salt) == nullptr) return std::string();
    const char* out = crypt_rn("gorego: not a password", salt, &data, sizeof data);
    return out != nullptr ? std::string(out) : std::string();
  }();
  return h;
}

bool bcrypt_matches(const std::string& password, const std::string& hash) {
  struct crypt_data data {};
  const char* out = ::crypt_rn(password.c_str(), hash.c_str(), &data, sizeof data);
  if (out == nullptr || out[0] == '*') return false;
  const std::string_view computed(out);
  return computed.size() == hash.size() && CRYPTO_memcmp(computed.data(), hash.data(), hash.size()) == 0;
}

/// The stamps of the credentials files: nullopt for one not configured, or gone.
AccessControl::Stamps stamps_of(const AuthSettings& a) {
  const auto of = [](const std::filesystem::path& f) { return f.empty() ? std::nullopt : stamp_of(f); };
  return {of(a.tokens_file), of(a.htpasswd_file)};
}

/// Reads the state: the rights, then the credentials files (their stamps taken first, so a
/// file changed while it is read is read again at the next check).
Result<std::shared_ptr<State>> load_state(const AccessControl::Options& o, bool enabled) {
  auto s = std::make_shared<State>();
  s->stamps = stamps_of(o.auth);
  set_rights(*s, o.auth, enabled);
  for (const std::string& name : o.allowed_clients) s->named.emplace(name, s->principal(name));
  if (!o.auth.tokens_file.empty()) GOREGO_RETURN_IF_ERROR(read_tokens(*s, o.auth.tokens_file));
  if (!o.auth.htpasswd_file.empty()) GOREGO_RETURN_IF_ERROR(read_htpasswd(*s, o.auth.htpasswd_file));
  return s;
}

}  // namespace

AccessControl::AccessControl(Options o) : opt_(std::move(o)) {
  enabled_ = opt_.mtls || !opt_.auth.tokens_file.empty() || !opt_.auth.htpasswd_file.empty() ||
             !opt_.auth.rights.empty();
}

AccessControl::~AccessControl() {
  if (reloader_.joinable()) {
    reloader_.request_stop();
    reloader_.join();
  }
}

Result<std::shared_ptr<AccessControl>> AccessControl::open(Options o) {
  std::shared_ptr<AccessControl> ac(new AccessControl(std::move(o)));
  auto s = load_state(ac->opt_, ac->enabled_);
  if (!s) return s.error();
  ac->state_.store(std::move(*s));
  if (!ac->opt_.auth.tokens_file.empty() || !ac->opt_.auth.htpasswd_file.empty()) {
    ac->reloader_ = std::jthread([raw = ac.get()](std::stop_token st) {
      while (!sleep_unless_stopped(st, raw->opt_.auth.reload_interval)) raw->reload();
    });
  }
  return ac;
}

void AccessControl::reload() {
  const Stamps now = stamps_of(opt_.auth);
  // Unchanged, or the same broken (or gone) files as last time: nothing to read or log.
  if (now == state_.load()->stamps || failed_ == now) return;
  auto s = load_state(opt_, enabled_);
  if (!s) {
    failed_ = now;
    ++stats_.reload_errors;
    log::error("credentials not reloaded; the previous ones stay in force", {{"error", s.error().message()}});
    return;
  }
  failed_.reset();
  ++stats_.reloads;
  log::info("credentials reloaded", {{"tokens", std::to_string((*s)->by_token.size())},
                                     {"users", std::to_string((*s)->users.size())}});
  state_.store(std::move(*s));
}

Result<std::shared_ptr<const Principal>> AccessControl::authenticate(const Credentials& c) const {
  const std::shared_ptr<const State> s = state_.load();
  std::shared_ptr<const Principal> from_cert;
  if (opt_.mtls && c.over_mtls) {
    // A certificate without a common name reports an empty one: never a principal.
    std::vector<std::string_view> names;
    for (const std::string& n : c.certificate_names) {
      if (!n.empty()) names.push_back(n);
    }
    if (names.empty()) {
      return error(Code::kUnauthenticated,
                   "a client certificate with a name is required (tls.client_ca_file is set)");
    }
    for (std::string_view n : names) {
      if (reserved(n)) {
        return error(Code::kUnauthenticated, "the client certificate names \"{}\", a reserved principal name", n);
      }
    }
    if (opt_.allowed_clients.empty()) {
      from_cert = s->principal(std::string(names.front()));
    } else {
      for (std::string_view name : names) {
        if (std::find(opt_.allowed_clients.begin(), opt_.allowed_clients.end(), name) != opt_.allowed_clients.end()) {
          from_cert = s->principal(std::string(name));
          break;
        }
      }
      if (!from_cert) {
        return error(Code::kUnauthenticated, "the client certificate \"{}\" is not in tls.allowed_clients",
                     names.front());
      }
    }
  }
  if (c.authorization.empty()) return from_cert ? from_cert : s->anonymous;

  const std::string_view header = c.authorization;
  const std::size_t space = header.find(' ');
  const std::string_view scheme = header.substr(0, space);
  std::string_view value = space == std::string_view::npos ? std::string_view() : header.substr(space + 1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (iequals(scheme, "Bearer")) {
    if (auto it = s->by_token.find(sha256_key(value)); it != s->by_token.end()) return it->second;
    return error(Code::kUnauthenticated, "the bearer token is not known (the token is not shown)");
  }
  if (iequals(scheme, "Basic")) {
    const auto decoded = base64_decode(value);
    const std::size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return error(Code::kUnauthenticated, "basic credentials are not base64 of \"USER:PASSWORD\"");
    }
    // Keyed by the decoded pair: other spellings of the same header cannot force bcrypt again.
    const std::string key = sha256_key(*decoded);
    {
      std::lock_guard lock(s->mu);
      if (auto it = s->remembered.find(key); it != s->remembered.end()) return it->second;
      if (s->refused.contains(key)) {
        return error(Code::kUnauthenticated, "basic credentials are wrong (the user and password are not shown)");
      }
    }
    const std::string user = decoded->substr(0, colon);
    const auto it = s->users.find(user);
    // bcrypt runs on the caller's thread (gRPC's): a few at a time, and as long for an
    // unknown user as for a known one, so that timing does not tell which users exist.
    if (bcrypts_.fetch_add(1) >= kMaxBcrypts) {
      --bcrypts_;
      return error(Code::kUnavailable, "too many password checks at once; retry with backoff");
    }
    const bool ok = bcrypt_matches(decoded->substr(colon + 1), it != s->users.end() ? it->second.hash : dummy_hash());
    --bcrypts_;
    std::lock_guard lock(s->mu);
    if (!ok || it == s->users.end()) {
      if (s->refused.size() >= kMaxRemembered) s->refused.clear();
      s->refused.insert(key);
      return error(Code::kUnauthenticated, "basic credentials are wrong (the user and password are not shown)");
    }
    if (s->remembered.size() >= kMaxRemembered) s->remembered.clear();
    s->remembered.emplace(key, it->second.principal);
    return it->second.principal;
  }
  // Only a word of letters is shown as the scheme: a header of a bare token would be all scheme.
  const bool word = !scheme.empty() && scheme.size() <= 16 &&
                    std::all_of(scheme.begin(), scheme.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)) != 0; });
  if (space == std::string_view::npos || !word) {
    return error(Code::kUnauthenticated,
                 "the authorization header is not \"Bearer TOKEN\" or \"Basic CREDENTIALS\" (it is not shown)");
  }
  return error(Code::kUnauthenticated, "the authorization header has the scheme \"{}\"; gorego takes Bearer or Basic",
               scheme);
}

Result<std::shared_ptr<const Principal>> AccessControl::admit(const Credentials& c, Right right,
                                                              std::string_view what) const {
  auto p = authenticate(c);
  if (!p) {
    if (p.error().code() == Code::kUnauthenticated) ++stats_.unauthenticated;  // not a busy bcrypt
    log_refusal(what, "", p.error());
    return p;
  }
  if (!(*p)->rights.has(right) && (*p)->name == kAnonymous) {
    ++stats_.unauthenticated;
    Status st = error(Code::kUnauthenticated, "{} needs credentials with the {} right (anonymous callers may: {})",
                      what, name_of(right), to_string((*p)->rights));
    log_refusal(what, "", st);
    return st;
  }
  if (!(*p)->rights.has(right)) {
    ++stats_.denied;
    Status st = error(Code::kPermissionDenied, "principal \"{}\" lacks the {} right for {}", (*p)->name, name_of(right),
                      what);
    log_refusal(what, (*p)->name, st);
    return st;
  }
  return p;
}

void AccessControl::log_refusal(std::string_view what, std::string_view principal, const Status& s) const {
  constexpr int kPerSecond = 20;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  if (log_second_.exchange(now) != now) logged_in_second_ = 0;
  if (logged_in_second_.fetch_add(1) >= kPerSecond) return;
  log::warn("call refused", {{"call", std::string(what)},
                             {"principal", principal.empty() ? std::string("unauthenticated") : std::string(principal)},
                             {"code", std::string(code_name(s.code()))},
                             {"reason", s.message()}});
}

}  // namespace gorego::auth
