#include "io/reader.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <fmt/format.h>
#include <stdexcept>
#include <thread>

#include "common/assert.hpp"
#include "common/units.hpp"

namespace sluice::io {

bool transient_errno(int err) {
  // EINTR: a signal interrupted the operation; ECANCELED: the kernel dropped it (ring teardown or
  // io-wq cancel); EAGAIN: no resources right now, and XFS/ext4 may return it for
  // RWF_NOWAIT-style paths even on blocking files. All are worth a bounded retry.
  return err == EAGAIN || err == EINTR || err == ECANCELED;
}

Reader::Reader(std::unique_ptr<Backend> backend, std::string path, std::uint64_t file_size, RetryPolicy retry)
    : backend_(std::move(backend)), path_(std::move(path)), file_size_(file_size), retry_(retry) {
  SLUICE_ASSERT(backend_ != nullptr);
  unsigned depth = backend_->queue_depth();
  ops_.resize(depth);
  free_slots_.reserve(depth);
  for (unsigned i = depth; i > 0; --i) free_slots_.push_back(i - 1);
  raw_.resize(depth);
}

std::unique_ptr<Reader> Reader::open(const std::string& path, const ReaderOptions& options, const BackendWrapper& wrap) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error(fmt::format("cannot stat {}: {}", path, std::strerror(errno)));
  }
  OpenedBackend opened = open_backend(path, options.backend);
  if (wrap) opened.backend = wrap(std::move(opened.backend));
  auto reader = std::make_unique<Reader>(std::move(opened.backend), path, static_cast<std::uint64_t>(st.st_size),
                                         options.retry);
  reader->set_fallback_note(std::move(opened.fallback_note));
  return reader;
}

std::optional<std::uint64_t> Reader::current_file_size() const {
  struct stat st {};
  // fstat of the open file, not stat of the name: a file renamed over ours is not what we read.
  if (::fstat(backend_->fd(), &st) != 0) return std::nullopt;  // unknown: the caller keeps its generic message
  return static_cast<std::uint64_t>(st.st_size);
}

void Reader::note_in_flight_change(int delta) {
  auto now = std::chrono::steady_clock::now();
  if (delta > 0 && in_flight_ == 0) busy_since_ = now;
  in_flight_ = static_cast<unsigned>(static_cast<int>(in_flight_) + delta);
  if (delta < 0 && in_flight_ == 0) stats_.busy += now - busy_since_;
}

void Reader::submit(const ReadRequest& request) {
  SLUICE_ASSERT_MSG(can_submit(), "Reader::submit beyond queue depth");
  if (backend_->direct()) {
    SLUICE_ASSERT_MSG(request.offset % kDirectAlign == 0 && request.length % kDirectAlign == 0 &&
                          reinterpret_cast<std::uintptr_t>(request.dest) % kDirectAlign == 0,
                      "direct I/O read not 4096-aligned");
  }
  note_in_flight_change(+1);
  if (request.offset >= file_size_ || request.length == 0) {
    // Nothing to read: answer at once rather than send the kernel a read that returns 0.
    ReadCompletion done{request.user_data, 0, {}};
    if (request.length != 0) {
      done.status = Error{ErrorKind::invalid, 0,
                          fmt::format("read of {} at offset {} length {} starts beyond end of file (size {})", path_,
                                      request.offset, request.length, file_size_)};
    }
    ready_.push_back(std::move(done));
    return;
  }
  std::uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  Op& op = ops_[slot];
  op = Op{request, std::min(request.offset + request.length, file_size_), request.offset, 0, 0, true};
  issue(slot, request.offset);
}

void Reader::issue(std::uint32_t slot, std::uint64_t start) {
  Op& op = ops_[slot];
  std::uint64_t request_end = op.request.offset + op.request.length;
  std::uint64_t length = backend_->direct() ? std::min(align_up(op.end - start, kDirectAlign), request_end - start)
                                            : op.end - start;
  RawRead raw{op.request.dest + (start - op.request.offset), start, static_cast<std::uint32_t>(length),
              op.request.buffer_index, slot};
  backend_->prepare(raw);
  ++raw_in_flight_;
}

Status Reader::flush() { return backend_->submit(); }

void Reader::finish_op(std::uint32_t slot) {
  ops_[slot].active = false;
  free_slots_.push_back(slot);
}

bool Reader::handle(const RawCompletion& raw, ReadCompletion& finished) {
  auto slot = static_cast<std::uint32_t>(raw.tag);
  SLUICE_ASSERT_MSG(slot < ops_.size() && ops_[slot].active, "completion for an unknown read");
  Op& op = ops_[slot];
  std::uint64_t issued_at = op.valid;  // where the last issue started (before alignment)
  if (backend_->direct()) issued_at = align_down(op.valid, kDirectAlign);

  auto fail = [&](ErrorKind kind, int err, std::string what) {
    ++stats_.errors;
    finished = ReadCompletion{op.request.user_data, op.valid - op.request.offset,
                              Error{kind, err,
                                    fmt::format("read of {} at offset {} length {} failed: {}", path_,
                                                op.request.offset, op.request.length, what)}};
    finish_op(slot);
    return true;
  };

  if (raw.result < 0) {
    int err = -raw.result;
    bool transient = transient_errno(err);
    if (transient && op.retries < retry_.max_retries) {
      ++op.retries;
      ++stats_.retries;
      if (err == EAGAIN) std::this_thread::sleep_for(retry_.eagain_backoff * op.retries);
      issue(slot, issued_at);
      return false;
    }
    // EIO (media error), EINVAL (misaligned direct I/O), EBADF, EFAULT and anything else are
    // not going to get better by asking again.
    std::string what = fmt::format("{} (errno {})", std::strerror(err), err);
    if (transient) what += fmt::format(" after {} retries", op.retries);
    return fail(ErrorKind::io, err, what);
  }
  // The file ends before this read does (it shrank since open, or the name now points at a
  // shorter file): say so in plain words instead of retrying or calling it a stuck device.
  auto ends_early = [&](std::uint64_t size_now) {
    ++stats_.errors;
    finished = ReadCompletion{
        op.request.user_data, op.valid - op.request.offset,
        Error{ErrorKind::io, 0,
              fmt::format("{}: file ends at byte {}, but the read needs bytes {}..{} (truncated or replaced while reading?)",
                          path_, size_now, op.request.offset, op.end - 1)}};
    finish_op(slot);
    return true;
  };
  if (raw.result == 0) {
    // EOF before the size we saw at open: the file shrank underneath us.
    if (const auto size_now = current_file_size(); size_now && *size_now < op.end) return ends_early(*size_now);
    return fail(ErrorKind::io, 0,
                fmt::format("unexpected end of file at offset {} (file size was {} when opened)", op.valid, file_size_));
  }
  op.valid = std::max(op.valid, issued_at + static_cast<std::uint64_t>(raw.result));
  if (op.valid >= op.end) {
    ++stats_.reads_completed;
    std::uint64_t bytes = op.end - op.request.offset;
    stats_.bytes_read += bytes;
    finished = ReadCompletion{op.request.user_data, bytes, {}};
    finish_op(slot);
    return true;
  }
  // Short read: keep what arrived and ask for the rest (from the aligned boundary below it,
  // since O_DIRECT needs aligned offsets; re-reading a few bytes is harmless).
  ++stats_.short_reads;
  // On a regular file a short read almost always means the end of the file: asking again would
  // only repeat it (with O_DIRECT from the aligned boundary below, returning the same few bytes)
  // until the bound below. One fstat tells that case from a device returning partial reads.
  if (const auto size_now = current_file_size(); size_now && *size_now <= op.valid) return ends_early(*size_now);
  if (++op.short_resubmits > retry_.max_short_resubmits) {
    return fail(ErrorKind::io, 0, fmt::format("{} short reads in a row, stuck at offset {}", op.short_resubmits - 1, op.valid));
  }
  issue(slot, backend_->direct() ? align_down(op.valid, kDirectAlign) : op.valid);
  return false;
}

Result<std::size_t> Reader::wait(std::span<ReadCompletion> out, std::size_t min_complete) {
  std::size_t produced = 0;
  min_complete = std::min<std::size_t>(min_complete, in_flight_);
  while (produced < out.size() && !ready_.empty()) {
    out[produced++] = std::move(ready_.front());
    ready_.pop_front();
    note_in_flight_change(-1);
  }
  while (produced < out.size() && raw_in_flight_ > 0) {
    if (Status st = backend_->submit(); !st) return st.error();
    std::size_t room = std::min(out.size() - produced, raw_.size());
    std::size_t want = produced < min_complete ? 1 : 0;
    Result<std::size_t> got = backend_->reap(std::span(raw_.data(), room), want);
    if (!got) return got.error();
    if (got.value() == 0) break;
    raw_in_flight_ -= static_cast<unsigned>(got.value());
    for (std::size_t i = 0; i < got.value(); ++i) {
      ReadCompletion done;
      if (handle(raw_[i], done)) {
        out[produced++] = std::move(done);
        note_in_flight_change(-1);
      }
    }
    if (produced >= min_complete && got.value() < room) break;
  }
  if (Status st = backend_->submit(); !st) return st.error();
  return produced;
}

Status Reader::read_sync(std::byte* dest, std::uint64_t offset, std::uint32_t length, std::uint64_t* bytes) {
  SLUICE_ASSERT_MSG(in_flight_ == 0, "read_sync with asynchronous reads in flight");
  submit(ReadRequest{dest, offset, length, -1, 0});
  ReadCompletion done;
  while (true) {
    Result<std::size_t> got = wait(std::span(&done, 1), 1);
    if (!got) return got.error();
    if (got.value() == 1) break;
  }
  if (bytes) *bytes = done.bytes;
  return done.status;
}

}  // namespace sluice::io
