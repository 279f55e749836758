// The prefetcher: a ring of pinned slots fed by a plan (the ordered extents one pass reads).
// An I/O thread keeps reads in flight up to the ring's capacity; when an extent's bytes have
// arrived, TBB workers verify each frame's checksum and decode it (zstd or raw) into the slot's
// staging area; the consumer receives move-only ExtentHandles in plan order, and a handle's
// destruction frees its slot for the next extent (back-pressure: at most `slots` extents are
// read ahead of the consumer). Errors (I/O, checksum, decode) reach the consumer as a typed
// PrefetchError naming the extent, frame and file offset, when it asks for that extent.
//
//   plan:   e0 e1 e2 e3 e4 ...          ring (slots = 3):
//   I/O:    [read e0][read e1][read e2]  wait for a free slot  [read e3] ...
//   decode:          [dec e0] [dec e1]   [dec e2]
//   consumer:                 [compute e0]    [compute e1] ...
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <tbb/task_arena.h>

#include "common/result.hpp"
#include "common/trace.hpp"
#include "io/fault_backend.hpp"
#include "io/reader.hpp"
#include "model/pack_format.hpp"
#include "numa/pinned_buffer.hpp"

namespace sluice::prefetch {

struct PrefetchOptions {
  unsigned slots = 4;  // ring depth: extents read ahead of the consumer, including the one in use
  // Bytes per read request. 1 MiB matches the pack's frame size and is past the point where
  // larger requests stop raising NVMe throughput (bench_io sweeps it).
  std::uint32_t read_bytes = 1u << 20;
  io::BackendOptions io;  // backend, O_DIRECT, queue depth (32)
  io::RetryPolicy retry;
  bool verify = true;     // check every frame's checksum (off only for benchmarks that say so)
  unsigned numa_node = 0;  // node for the ring's pinned memory
  std::shared_ptr<numa::Topology> topology;  // null: this machine
  io::FaultPlan* fault = nullptr;  // tests: wrap the backend in a FaultBackend with this plan
  TraceRecorder* trace = nullptr;  // lanes "io" (one span per extent read) and "decompress/worker N"
};

struct PrefetchError {
  ErrorKind kind = ErrorKind::io;
  std::uint32_t extent = 0;    // index into the pack's extent table
  std::string extent_name;
  std::int64_t frame = -1;     // frame index within the extent, -1 when not frame-specific
  std::uint64_t file_offset = 0;
  int sys_errno = 0;
  std::string message;         // full context: file, extent, frame, offset, cause
};

struct PrefetchStats {
  std::uint64_t extents_read = 0;    // extents whose bytes have fully arrived
  std::uint64_t extents_delivered = 0;
  std::uint64_t bytes_read = 0;      // stored bytes read from the file
  std::uint64_t bytes_decoded = 0;   // raw bytes delivered
  std::uint64_t frames_verified = 0;
  std::uint64_t max_slots_in_use = 0;
  std::uint64_t waits = 0;               // times the I/O thread blocked for completions
  std::uint64_t in_flight_at_wait = 0;   // summed reads in flight at those times (/waits = mean depth)
  std::chrono::nanoseconds io_busy{0};       // wall time with at least one read in flight
  std::chrono::nanoseconds decode_busy{0};   // summed worker time verifying and decoding
  std::chrono::nanoseconds consumer_wait{0}; // time next() spent blocked
};

class Prefetcher;

// Ring memory one extent needs: its stored bytes rounded up to the direct-I/O block, plus a
// decode buffer when any frame is compressed.
std::uint64_t extent_slot_bytes(const pack::ExtentInfo& extent);

// Splits an extent into pieces the prefetcher can read on their own, so that an extent larger
// than a ring slot (a big vocabulary's output head) streams through small slots: runs of whole
// frames, each as an ExtentInfo whose offset is rounded down to the direct-I/O block (its
// disk_bytes then count the gap before the first frame) and whose extent_slot_bytes stays within
// max_slot_bytes (a piece always holds at least one frame). Piece k's raw bytes follow piece
// k-1's in the original extent. Checksums still verify: they are seeded by file offset.
std::vector<pack::ExtentInfo> extent_pieces(const pack::ExtentInfo& extent, std::uint64_t max_slot_bytes);

// A delivered extent: its decoded bytes stay valid until the handle dies. Move-only.
class ExtentHandle {
 public:
  ExtentHandle() = default;
  ExtentHandle(ExtentHandle&& other) noexcept { *this = std::move(other); }
  ExtentHandle& operator=(ExtentHandle&& other) noexcept;
  ExtentHandle(const ExtentHandle&) = delete;
  ExtentHandle& operator=(const ExtentHandle&) = delete;
  ~ExtentHandle() { reset(); }

  explicit operator bool() const { return owner_ != nullptr; }
  std::uint32_t extent() const { return extent_; }
  std::size_t plan_position() const { return plan_position_; }
  // The extent's decoded raw bytes (raw_bytes long). For an all-raw extent this is the slot's
  // read buffer itself: no copy is made.
  std::span<const std::byte> bytes() const { return bytes_; }
  // Releases the slot early (the destructor does this otherwise).
  void reset();

 private:
  friend class Prefetcher;
  ExtentHandle(Prefetcher* owner, unsigned slot, std::uint32_t extent, std::size_t pos, std::span<const std::byte> bytes)
      : owner_(owner), slot_(slot), extent_(extent), plan_position_(pos), bytes_(bytes) {}
  Prefetcher* owner_ = nullptr;
  unsigned slot_ = 0;
  std::uint32_t extent_ = 0;
  std::size_t plan_position_ = 0;
  std::span<const std::byte> bytes_;
};

// Thread safety: one consumer thread calls next()/cancel(); handles may be released from any
// thread. Every handle must be released before the Prefetcher is destroyed.
class Prefetcher {
  friend class ExtentHandle;  // release()

 public:
  // `extents` is the pack's extent table (validated by pack::Pack::open), `plan` the extent
  // indices to stream, in order (an extent may appear more than once). Allocates the ring
  // (slots x (largest stored extent + largest decoded extent that needs staging)) and starts
  // reading. Throws std::runtime_error when the file cannot be opened or memory not allocated.
  Prefetcher(std::string path, std::vector<pack::ExtentInfo> extents, std::vector<std::uint32_t> plan,
             PrefetchOptions options = {});
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Blocks until the next extent of the plan is ready and returns it, or the error that stopped
  // it. After the plan's end, returns an error of kind `cancelled` saying so; check done().
  Result<ExtentHandle, PrefetchError> next();
  bool done() const { return next_position_ >= plan_.size(); }
  // Stops reading ahead; waits for reads in flight to land (the kernel may still be writing
  // into the ring) but not for the consumer. next() then returns `cancelled`.
  void cancel();

  PrefetchStats stats() const;
  std::uint64_t ring_bytes() const { return ring_bytes_; }
  const char* backend_name() const;
  const std::string& io_note() const;

 private:
  enum class SlotState { free, reading, decoding, ready, failed, consumed };
  struct Slot {
    numa::PinnedBuffer memory;
    std::byte* disk = nullptr;     // stored bytes land here (4096-aligned)
    std::byte* staging = nullptr;  // decoded bytes for extents that are not all raw
    SlotState state = SlotState::free;
    std::size_t plan_position = 0;
    std::uint32_t extent = 0;
    std::uint64_t read_length = 0;  // bytes to read: extent disk span rounded up to 4096
    std::uint32_t chunks_total = 0, chunks_issued = 0, chunks_done = 0;
    std::chrono::steady_clock::time_point read_started;
    std::span<const std::byte> decoded;
    PrefetchError error;
  };

  void io_loop();
  void note_io_busy();       // under mutex_, on the I/O thread
  bool assign_free_slots();  // under mutex_
  void issue_reads();        // under mutex_
  void on_read_complete(const io::ReadCompletion& completion);
  void start_decode(unsigned slot);
  void decode_slot(unsigned slot);
  void release(unsigned slot);
  PrefetchError make_error(ErrorKind kind, std::uint32_t extent, std::uint64_t file_offset, int sys_errno,
                           const std::string& cause) const;

  std::string path_;
  std::vector<pack::ExtentInfo> extents_;
  std::vector<std::uint32_t> plan_;
  PrefetchOptions options_;
  std::unique_ptr<io::Reader> reader_;
  std::vector<Slot> slots_;
  std::uint64_t ring_bytes_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable io_cv_;        // wakes the I/O thread: slot freed, cancel
  std::condition_variable consumer_cv_;  // wakes the consumer: slot ready/failed, cancel
  std::size_t assign_position_ = 0;      // next plan position to give a slot
  std::size_t next_position_ = 0;        // next plan position to deliver
  bool cancelled_ = false;
  bool io_failed_ = false;               // stop assigning after the first error
  bool error_delivered_ = false;         // the consumer has seen an error: deliver nothing more
  unsigned handles_alive_ = 0;
  unsigned decodes_running_ = 0;
  std::condition_variable decode_cv_;

  PrefetchStats stats_;  // under mutex_, except the atomics below
  std::chrono::steady_clock::time_point io_busy_open_since_;  // under mutex_; epoch: no read in flight
  std::atomic<std::int64_t> decode_busy_ns_{0};
  std::atomic<std::uint64_t> frames_verified_{0};
  // Decode workers: enqueued tasks, one per extent, parallel over frames. Not the session's
  // compute::Executor on purpose: decoding is the I/O side of the pipeline and must overlap the
  // pass that computes on the executor (with `-t 1` the executor's one thread is busy computing,
  // and a decode queued behind it would serialize reading and computing); --threads bounds the
  // compute kernels, not the decompression that keeps them fed.
  tbb::task_arena arena_;
  std::thread io_thread_;
};

}  // namespace sluice::prefetch
