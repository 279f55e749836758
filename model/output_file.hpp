// Model files written atomically and in bounded memory (`convert`, `synth`, the GGUF writer).
// A file is written under a temporary name next to its final one, flushed to disk, then renamed
// over the final name, and the directory is flushed: a reader of the final name sees the old file
// or the whole new one, never a half-written file, whatever kills the writer. Written ranges are
// pushed to disk and dropped from the page cache as the file grows, so a writer's dirty pages
// (which a memory cgroup charges to it and cannot reclaim until written back) stay a few MiB.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace sluice {

// The temporary name a file bound for `path` is written under until it is committed.
std::string temp_path_for(const std::string& path);

// Throws std::runtime_error when writing `output` would replace or modify `input`: the same file
// (same device and inode, so the same path, a symlink or a hard link), or `input` is the temporary
// name the output is written under. `what` names the operation in the message ("convert").
// Call before opening anything for writing.
void refuse_output_that_is_input(const std::string& what, const std::string& input, const std::string& output);

// Move-only owner of one file being written. Not thread-safe. Errors throw std::runtime_error
// whose message starts with "`label` `path`:" (label: "pack", "gguf") and names the offset and
// errno. Destroyed without commit(): the temporary file is closed and removed, and whatever was
// under `path` before is untouched.
class OutputFile {
 public:
  // Creates temp_path_for(path) (a stale one left by a killed run is replaced, never reused).
  OutputFile(std::string path, std::string label);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

  // Writes all of `bytes` at `offset` (EINTR and short writes continue; ENOSPC, EIO throw).
  void pwrite_all(std::span<const std::byte> bytes, std::uint64_t offset);
  // Writes at the end of what write() wrote so far (a sequential writer's cursor).
  void write(std::span<const std::byte> bytes);
  std::uint64_t write_offset() const { return write_offset_; }
  // Sets the file's size (padding with zeros past the end).
  void truncate(std::uint64_t bytes);

  // Tells the file that [0, end) is written and will not change (a later header rewrite of the
  // first bytes is fine, just not dropped early): starts writeback of the newly written range
  // and drops the range before it from the page cache once it is on disk. Called after every
  // write of a sequential writer; cheap when there is little new.
  void written_through(std::uint64_t end);

  // fsync and close: the file is complete and durable under temp_path(), not yet published. A
  // writer of several files syncs them all before committing any. Only commit() afterwards.
  void sync();

  // sync() (unless done), rename onto path(), fsync the directory. No calls afterwards.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what, int err) const;
  void discard() noexcept;

  std::string path_;
  std::string temp_path_;
  std::string label_;
  int fd_ = -1;
  bool temp_exists_ = true;  // temp_path() is ours to remove until it is renamed (or removed)
  std::uint64_t write_offset_ = 0;
  std::uint64_t writeback_started_to_ = 0;  // writeback requested for [0, this)
  std::uint64_t dropped_to_ = 0;            // [0, this) is on disk and out of the page cache
};

}  // namespace sluice
