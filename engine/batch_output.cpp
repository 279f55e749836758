// engine/batch_output.hpp: the output, its journal and its lock; resume proves before it touches.
#include "engine/batch_output.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>
#include <xxhash.h>

#include "engine/batch_input.hpp"
#include "engine/batch_wire.hpp"
#include "common/error.hpp"

namespace sluice {
namespace {

// model_identity reads this much of the model's start and end (see the header).
constexpr std::uint64_t kIdentityHeadBytes = 4u << 20, kIdentityTailBytes = 1u << 20;
// A result line is at most a context of generated text, JSON-escaped, plus ~1 KiB of fields.
constexpr std::size_t kMaxResultLineBytes = 64u << 20;
// Lock-file attempts: each retry means the holder removed the file between our open and flock.
constexpr int kLockAttempts = 100;
constexpr int kJournalVersion = 1;
constexpr std::string_view kHeaderStart = "{\"sluice_batch_journal\":";

double now_seconds() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string errno_text() { return std::strerror(errno); }

void read_exact(int fd, char* data, std::size_t n, std::uint64_t offset, const std::string& path) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd, data + done, n - done, off_t(offset + done));
    if (got < 0 && errno == EINTR) continue;  // a handled signal: retry
    if (got <= 0)
      throw Exception(ErrorContext{ErrorKind::io, path, {}, -1, std::int64_t(offset + done)},
                      fmt::format("reading {} at offset {} failed: {}", path, offset + done,
                                  got == 0 ? "unexpected end of file" : errno_text()));
    done += std::size_t(got);
  }
}

// fsync of a directory, so a file created or removed in it survives a power cut.
void sync_directory_of(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the files themselves are fsynced
  (void)::fsync(fd);
  ::close(fd);
}

std::string quoted_id(const std::string& custom_id) { return custom_id.empty() ? "none" : "\"" + custom_id + "\""; }

}  // namespace

ModelIdentity model_identity(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Exception(ErrorContext{ErrorKind::io, path}, fmt::format("cannot read the model {}: {}", path, errno_text()));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Exception(ErrorContext{ErrorKind::io, path}, fmt::format("cannot stat the model {}: {}", path, errno_text()));
  }
  ModelIdentity id;
  id.file = std::filesystem::path(path).filename().string();
  id.bytes = std::uint64_t(st.st_size);
  const std::uint64_t head = std::min(id.bytes, kIdentityHeadBytes);
  const std::uint64_t tail = std::min(id.bytes - head, kIdentityTailBytes);
  std::string data(std::size_t(head + tail), '\0');
  try {
    read_exact(fd, data.data(), std::size_t(head), 0, path);
    read_exact(fd, data.data() + head, std::size_t(tail), id.bytes - tail, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  id.hash = XXH3_64bits_withSeed(data.data(), data.size(), id.bytes);
  return id;
}

OutputLock::OutputLock(std::string path, std::ostream& log) : path_(std::move(path)) {
  for (int attempt = 0; attempt < kLockAttempts; ++attempt) {
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("cannot create the lock file {}: {}", path_, errno_text()));
    int rc;
    do {
      rc = ::flock(fd, LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      const int err = errno;
      char pid[32] = {};
      const ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
      ::close(fd);
      if (err == EWOULDBLOCK) {
        std::string holder = n > 0 ? std::string(pid, std::size_t(n)) : "";
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
        throw Exception(ErrorContext{ErrorKind::invalid, path_},
                        fmt::format("another sluice batch (pid {}) is writing this output (it holds {}); refusing to "
                                    "write it twice at once. Wait for it to end (or stop it), then rerun to resume",
                                    holder.empty() ? "unknown" : holder, path_));
      }
      if (err == ENOSYS || err == EOPNOTSUPP || err == ENOLCK) {  // no flock on this file system
        log << fmt::format("sluice batch: WARNING: cannot lock {} ({}): running unlocked; do not run two jobs on this output "
                           "at once\n",
                           path_, std::strerror(err));
        return;
      }
      throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("cannot lock {}: {}", path_, std::strerror(err)));
    }
    // The holder before us may have removed the file after our open: then our lock is on a
    // file nobody else will open; take the lock again on the file now at the path.
    struct stat held {}, at_path {};
    if (::fstat(fd, &held) == 0 && ::stat(path_.c_str(), &at_path) == 0 && held.st_dev == at_path.st_dev &&
        held.st_ino == at_path.st_ino) {
      const std::string pid = fmt::format("{}\n", ::getpid());
      if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
        ::close(fd);
        throw Exception(ErrorContext{ErrorKind::io, path_},
                        fmt::format("cannot write the lock file {}: {}", path_, errno_text()));
      }
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("cannot lock {}: it keeps being replaced", path_));
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still held, so no one locks the removed file after us
  ::close(fd_);
}

class DurableOutput::File {
 public:
  File(std::string path, int flags, bool syncable) : path_(std::move(path)), syncable_(syncable) {
    fd_ = ::open(path_.c_str(), flags | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("cannot open {} for writing: {}", path_, errno_text()));
    struct stat st {};
    if (syncable_ && ::fstat(fd_, &st) == 0) size_ = std::uint64_t(st.st_size);
  }
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  // Appends line + '\n' with one write where the kernel allows; a failure (ENOSPC, EIO, EPIPE)
  // cuts what was written of this line, so the file ends on a whole line, and throws.
  void append(std::string_view line) {
    std::string data;
    data.reserve(line.size() + 1);
    data.append(line);
    data.push_back('\n');
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;  // a handled signal arrived before anything was written: retry
      if (n <= 0) {
        const int err = n < 0 ? errno : ENOSPC;  // a write of 0 bytes to a file: no room
        if (syncable_ && done > 0) (void)::ftruncate(fd_, off_t(size_));
        throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("writing {} failed: {}", path_, std::strerror(err)));
      }
      done += std::size_t(n);
    }
    size_ += data.size();
  }
  void sync() {
    if (!syncable_) return;  // a pipe or a device: nothing to make durable
    if (::fsync(fd_) != 0)
      throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("fsync of {} failed: {}", path_, errno_text()));
  }
  void cut_to(std::uint64_t size) {
    if (::ftruncate(fd_, off_t(size)) != 0)
      throw Exception(ErrorContext{ErrorKind::io, path_}, fmt::format("cannot truncate {}: {}", path_, errno_text()));
    size_ = size;
  }

 private:
  std::string path_;
  bool syncable_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

DurableOutput::DurableOutput(const OutputOptions& options, const ExpectedResults& expected, std::ostream& log)
    : options_(options), expected_(expected) {
  const std::size_t n = expected_.ids.size();
  answered_.assign(n, false);
  pending_.resize(n);
  last_sync_ = now_seconds();
  struct stat out_st {}, in_st {};
  const bool exists = ::stat(options_.path.c_str(), &out_st) == 0;
  if (exists && ::stat(expected_.input.c_str(), &in_st) == 0 && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
    throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                    fmt::format("the output {} is the input {}: answers would overwrite the requests; choose another -o",
                                options_.path, expected_.input));
  }
  if (exists && S_ISDIR(out_st.st_mode))
    throw Exception(ErrorContext{ErrorKind::invalid, options_.path}, fmt::format("the output {} is a directory", options_.path));
  if (exists && !S_ISREG(out_st.st_mode)) {
    // A pipe, a terminal, /dev/null: written in order, never read, no sidecars.
    streaming_ = true;
    out_ = std::make_unique<File>(options_.path, O_WRONLY, false);
    log << fmt::format("sluice batch: {} is not a regular file: writing it without resume (no lock, no journal)\n", options_.path);
    return;
  }
  real_path_ = std::filesystem::weakly_canonical(std::filesystem::absolute(options_.path)).string();
  journal_path_ = real_path_ + ".journal";
  lock_ = std::make_unique<OutputLock>(real_path_ + ".lock", log);

  // Read-only until both files are proven this job's.
  if (exists) verify_output();
  load_journal(log);
  if (torn_bytes_ > 0 && written_ == 0 && !journal_exists_) {
    throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                    fmt::format("{} holds {} bytes that are not a complete result line, and no journal ({}) says this job "
                                "wrote them: it is not this job's output; nothing in it was changed (choose another -o)",
                                options_.path, torn_bytes_, journal_path_));
  }

  if (journal_exists_) {
    journal_ = std::make_unique<File>(journal_path_, O_WRONLY | O_APPEND, true);
    if (journal_cut_) journal_->cut_to(journal_keep_bytes_);
  } else if (written_ < n) {  // a complete OUT (a rerun of a finished job) needs no journal
    journal_ = std::make_unique<File>(journal_path_, O_WRONLY | O_APPEND | O_CREAT | O_EXCL, true);
  }
  if (journal_ && !journal_has_header_) {
    const nlohmann::ordered_json header = {
        {"sluice_batch_journal", kJournalVersion},
        {"model", {{"file", expected_.model.file}, {"bytes", expected_.model.bytes}, {"tag", model_tag_hex(expected_.model.tag())}}}};
    journal_->append(header.dump());
    journal_->sync();
    sync_directory_of(journal_path_);
  }
  out_ = std::make_unique<File>(options_.path, O_WRONLY | O_APPEND | O_CREAT, true);
  if (torn_bytes_ > 0) {
    out_->cut_to(verified_bytes_);
    log << fmt::format("sluice batch: cut a torn last line ({} bytes) from {}\n", torn_bytes_, options_.path);
  }
  if (!exists) sync_directory_of(real_path_);
  for (std::size_t i = 0; i < written_; ++i) answered_[i] = true;
  std::uint64_t from_journal = 0;
  for (std::size_t i = written_; i < n; ++i) {
    if (!pending_[i]) continue;
    answered_[i] = true;
    ++from_journal;
  }
  resumed_ = written_ + from_journal;
  if (resumed_ > 0) {
    log << fmt::format("sluice batch: {} answers already in {}, {} more in its journal (not recomputed)\n", written_,
                       options_.path, from_journal);
  }
  flush_ordered();
  sync();
}

DurableOutput::~DurableOutput() {
  try {
    sync();
  } catch (...) {  // already reported by the write that failed; nothing more to do here
  }
}

void DurableOutput::verify_output() {
  // A file that does not begin like a result line is refused from its first bytes, without
  // reading on to its first newline (a model file may have none for a long way).
  {
    std::string head(kResultLineStart.size(), '\0');
    const int fd = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw Exception(ErrorContext{ErrorKind::io, options_.path},
                      fmt::format("cannot read the output {}: {}", options_.path, errno_text()));
    ssize_t n;
    do {
      n = ::pread(fd, head.data(), head.size(), 0);
    } while (n < 0 && errno == EINTR);  // a handled signal: retry
    const int err = errno;
    ::close(fd);
    if (n < 0)
      throw Exception(ErrorContext{ErrorKind::io, options_.path},
                      fmt::format("reading the output {} failed: {}", options_.path, std::strerror(err)));
    head.resize(std::size_t(n));
    if (!kResultLineStart.starts_with(head) && !head.starts_with(kResultLineStart)) {
      throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                      fmt::format("{} does not begin like a sluice batch result line: it is not this job's output; "
                                  "nothing in it was changed (choose another -o)",
                                  options_.path));
    }
  }
  const std::size_t n = expected_.ids.size();
  const std::string tag = model_tag_hex(expected_.model.tag());
  LineReader reader(options_.path, kMaxResultLineBytes, "output");
  LineReader::Line l;
  while (reader.next(l)) {
    if (!l.complete) {
      torn_bytes_ = l.bytes;
      break;
    }
    const std::size_t i = written_;
    const std::optional<ResultLine> r = l.too_long ? std::nullopt : parse_result_line(l.text);
    if (!r) {
      throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                      fmt::format("{} line {} is not a sluice batch result line: {} is not this job's output; nothing in it "
                                  "was changed (choose another -o)",
                                  options_.path, l.number, options_.path));
    }
    if (i >= n) {
      throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                      fmt::format("{} has more lines than the {} requests of {}: it belongs to another job; nothing in it "
                                  "was changed (choose another -o)",
                                  options_.path, n, expected_.input));
    }
    if (r->custom_id != expected_.custom_ids[i]) {
      throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                      fmt::format("{} line {} answers custom_id {} but request {} of {} is {} (input line {}): the output "
                                  "belongs to another input or shard; nothing in it was changed (choose another -o)",
                                  options_.path, l.number, quoted_id(r->custom_id), i + 1, expected_.input,
                                  quoted_id(expected_.custom_ids[i]), expected_.lines[i]));
    }
    if (r->id != expected_.ids[i]) {
      if (model_tag_of_id(r->id) != tag) {
        throw Exception(ErrorContext{ErrorKind::invalid, options_.path},
                        fmt::format("{} line {} was answered by another model (tag {}; {} has tag {}): refusing to mix two "
                                    "models' answers in one output; rerun with the model that wrote it, or choose another -o",
                                    options_.path, l.number, model_tag_of_id(r->id), expected_.model.file, tag));
      }
      throw Exception(
          ErrorContext{ErrorKind::invalid, options_.path},
          fmt::format("input line {} of {} (custom_id {}) changed since its answer was written to {} line {} "
                      "(or --max-tokens, --seed, --chat-template, --special or --input-format did): refusing "
                      "to mix answers to two versions of the input; restore it, or choose another -o",
                      expected_.lines[i], expected_.input, quoted_id(expected_.custom_ids[i]), options_.path, l.number));
    }
    verified_bytes_ += l.bytes + 1;
    ++written_;
  }
}

void DurableOutput::load_journal(std::ostream& log) {
  struct stat st {};
  if (::stat(journal_path_.c_str(), &st) != 0) return;
  journal_exists_ = true;
  const std::string tag = model_tag_hex(expected_.model.tag());
  std::unordered_map<std::string_view, std::size_t> position_of;
  for (std::size_t i = 0; i < expected_.ids.size(); ++i) position_of.emplace(expected_.ids[i], i);
  LineReader reader(journal_path_, kMaxResultLineBytes, "journal");
  LineReader::Line l;
  std::uint64_t good_bytes = 0;
  bool torn = false;
  while (reader.next(l)) {
    if (!l.complete) {
      // A crash mid-write: cut it. A torn first line must at least begin like our header.
      if (l.number == 1 && (l.too_long || !l.text.starts_with(std::string_view(kHeaderStart).substr(0, l.text.size())))) {
        throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                        fmt::format("{} is not a sluice batch journal; not touching it or {} (move it away, or choose "
                                    "another -o)",
                                    journal_path_, options_.path));
      }
      torn = true;
      break;
    }
    if (l.number == 1) {
      const nlohmann::json header = l.too_long ? nlohmann::json() : nlohmann::json::parse(l.text, nullptr, false);
      if (!header.is_object() || header.value("sluice_batch_journal", 0) != kJournalVersion || !header.contains("model") ||
          !header["model"].is_object()) {
        throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                        fmt::format("{} is not a sluice batch journal (version {}); not touching it or {} (move it away, "
                                    "or choose another -o)",
                                    journal_path_, kJournalVersion, options_.path));
      }
      const nlohmann::json& m = header["model"];
      if (m.value("tag", "") != tag) {
        throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                        fmt::format("{} holds answers by the model {} ({} bytes, tag {}), but this run's model is {} ({} "
                                    "bytes, tag {}): refusing to mix two models' answers in {}; rerun with that model, or "
                                    "choose another -o",
                                    journal_path_, m.value("file", "?"), m.value("bytes", std::uint64_t(0)), m.value("tag", "?"),
                                    expected_.model.file, expected_.model.bytes, tag, options_.path));
      }
      good_bytes += l.bytes + 1;
      journal_has_header_ = true;
      continue;
    }
    const std::optional<ResultLine> r = l.too_long ? std::nullopt : parse_result_line(l.text);
    if (!r) {
      throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                      fmt::format("{} line {} is damaged (not a result line); delete {} to compute its answers again",
                                  journal_path_, l.number, journal_path_));
    }
    const auto it = position_of.find(r->id);
    if (it == position_of.end()) {
      std::size_t pos = expected_.ids.size();
      for (std::size_t i = 0; i < expected_.custom_ids.size() && !r->custom_id.empty(); ++i) {
        if (expected_.custom_ids[i] == r->custom_id) pos = i;
      }
      if (pos == expected_.ids.size()) {
        throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                        fmt::format("{} line {} answers custom_id {}, which is no request of {} (this shard): the journal "
                                    "belongs to another input; choose another -o",
                                    journal_path_, l.number, quoted_id(r->custom_id), expected_.input));
      }
      if (model_tag_of_id(r->id) != tag) {
        throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                        fmt::format("{} line {} was answered by another model (tag {}; {} has tag {}): refusing to mix two "
                                    "models' answers; choose another -o",
                                    journal_path_, l.number, model_tag_of_id(r->id), expected_.model.file, tag));
      }
      throw Exception(ErrorContext{ErrorKind::invalid, journal_path_},
                      fmt::format("input line {} of {} (custom_id {}) changed since its answer was written to {} line {} "
                                  "(or --max-tokens, --seed, --chat-template, --special or --input-format did): refusing "
                                  "to mix answers to two versions of the input; restore it, or choose another -o",
                                  expected_.lines[pos], expected_.input, quoted_id(r->custom_id), journal_path_, l.number));
    }
    good_bytes += l.bytes + 1;
    const std::size_t pos = it->second;
    if (pos >= written_ && !pending_[pos]) pending_[pos] = std::string(l.text);
  }
  if (torn) {
    journal_cut_ = true;
    journal_keep_bytes_ = good_bytes;
    log << fmt::format("sluice batch: cutting a torn last record from {}\n", journal_path_);
  }
}

void DurableOutput::flush_ordered() {
  while (written_ < pending_.size() && pending_[written_]) {
    out_->append(*pending_[written_]);
    pending_[written_].reset();
    answered_[written_] = true;
    ++written_;
  }
}

void DurableOutput::put(std::size_t pos, const std::string& line) {
  if (journal_) journal_->append(line);
  answered_[pos] = true;
  ++recorded_;
  pending_[pos] = line;
  flush_ordered();
  if (now_seconds() - last_sync_ >= options_.fsync_seconds) sync();
}

void DurableOutput::sync() {
  if (journal_) journal_->sync();  // the journal first: OUT never holds an answer the journal might lose
  if (out_) out_->sync();
  last_sync_ = now_seconds();
}

void DurableOutput::finish() {
  flush_ordered();
  sync();
  if (streaming_ || written_ < pending_.size()) return;
  journal_.reset();
  if (::unlink(journal_path_.c_str()) == 0) sync_directory_of(journal_path_);
}

}  // namespace sluice
