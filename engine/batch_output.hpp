// Where `sluice batch` puts its answers, durably, and how a rerun proves an output is its own.
//
// Files, for -o OUT a regular file (or a path that does not exist yet):
//   OUT          the answers, OpenAI Batch output JSONL in input order. A line is appended whole
//                (one write) once every earlier line is there. Each line's "id" names its request
//                and model (engine/batch_wire.hpp), so OUT checks itself on resume.
//   OUT.journal  every answer as soon as it is finished, in any order: line 1 a header
//                {"sluice_batch_journal": 1, "model": {"file", "bytes", "tag"}}, then result lines
//                exactly as they go to OUT. A slow request holds back OUT, never the journal, so a
//                kill loses at most the answers of the last --fsync-interval. Removed when the
//                job is complete (OUT then holds everything).
//   OUT.lock     held with flock(LOCK_EX) for the job's life and holding the holder's PID: a second
//                `sluice batch` on OUT (a requeued Slurm task while the old one still runs) is
//                refused at once, naming that PID. Removed at exit.
// Both sidecars live next to OUT's real path (symlinks resolved).
//
// Resume (DurableOutput's constructor): OUT is read as a stream and nothing in it is changed
// until it is proven to be this job's: every complete line must be the answer of this input's
// request at that position, by this model (else: refused, naming the line, the input line or
// the model); a torn last line (a crash mid-write) is cut only when complete lines or the journal
// prove the file ours. The journal's answers then extend OUT in order, and are not recomputed.
//
// An OUT that is not a regular file (/dev/stdout as a pipe, /dev/null, a FIFO) is only written:
// no lock, journal or resume, and it is never read (reading a pipe's write end waits forever).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace sluice {

// A model file's identity, cheap to compute for a file of any size: its name, size, and an XXH3
// of its first 4 MiB (GGUF header, metadata, most of the tensor table) and last 1 MiB (the pack's
// manifest and tensor table). Another file, a requantized or re-converted model, gives another
// hash. Throws std::runtime_error when the file cannot be read.
struct ModelIdentity {
  std::string file;  // the file name (no directories: a moved model is the same model)
  std::uint64_t bytes = 0;
  std::uint64_t hash = 0;
  std::uint32_t tag() const { return static_cast<std::uint32_t>(hash); }
};
ModelIdentity model_identity(const std::string& path);

// What this job's answers will be, position by position (this shard's non-blank input lines).
struct ExpectedResults {
  std::vector<std::string> ids;  // engine/batch_wire.hpp result_id
  std::vector<std::string> custom_ids;
  std::vector<std::int64_t> lines;  // input line numbers
  ModelIdentity model;
  std::string input;  // the input's path, for messages
};

// An exclusive lock on OUT for the job's life (see above). Move-only; the destructor unlocks
// and removes the lock file.
class OutputLock {
 public:
  // Throws std::runtime_error naming the holder's PID when another process holds it. On a file
  // system without flock (ENOSYS, EOPNOTSUPP, ENOLCK: Lustre mounted without -o flock, some
  // NFS setups) it warns on `log` and goes on unlocked rather than refuse every job there.
  OutputLock(std::string path, std::ostream& log);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

struct OutputOptions {
  std::string path;
  double fsync_seconds = 2.0;  // most seconds between fsyncs (0: after every answer)
};

// The job's output (see the file comment). Not thread-safe: one job thread calls it.
class DurableOutput {
 public:
  // Locks, verifies and recovers OUT and its journal (a regular file), or opens it for writing
  // (anything else). Throws std::runtime_error for an output that is not this job's, an output
  // locked by another process, or an I/O error; nothing in OUT is changed before that.
  DurableOutput(const OutputOptions& options, const ExpectedResults& expected, std::ostream& log);
  ~DurableOutput();
  DurableOutput(const DurableOutput&) = delete;
  DurableOutput& operator=(const DurableOutput&) = delete;

  bool streaming() const { return streaming_; }
  // Positions answered before this run (in OUT or in the journal).
  std::uint64_t resumed() const { return resumed_; }
  bool answered(std::size_t pos) const { return answered_[pos]; }
  // Records the answer at `pos`: to the journal now, to OUT when every earlier one is there;
  // fsyncs both when --fsync-interval has passed. Throws std::runtime_error naming the file on a
  // failed write (the torn bytes are cut, everything before stays).
  void put(std::size_t pos, const std::string& line);
  // Lines in OUT (in order) and answers recorded (in any order).
  std::uint64_t written() const { return written_; }
  std::uint64_t recorded() const { return recorded_; }
  // fsyncs the journal, then OUT. Throws like put().
  void sync();
  // After the last answer: fsyncs OUT and, when every position is in it, removes the journal.
  void finish();

  class File;  // a file appended to whole lines at a time (batch_output.cpp)

 private:
  void verify_output();
  void load_journal(std::ostream& log);
  void flush_ordered();

  OutputOptions options_;
  const ExpectedResults& expected_;
  bool streaming_ = false;
  std::string real_path_, journal_path_;
  std::unique_ptr<OutputLock> lock_;
  std::unique_ptr<File> out_, journal_;
  std::vector<bool> answered_;
  std::vector<std::optional<std::string>> pending_;  // answered, waiting for earlier ones
  std::uint64_t resumed_ = 0, written_ = 0, recorded_ = 0;
  std::uint64_t verified_bytes_ = 0, torn_bytes_ = 0;
  bool journal_exists_ = false, journal_has_header_ = false, journal_cut_ = false;
  std::uint64_t journal_keep_bytes_ = 0;  // a torn last journal record starts here
  double last_sync_ = 0;
};

}  // namespace sluice
