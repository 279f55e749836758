// The prefetcher: a ring of pinned slots fed by a schedule (the ordered extents to read, which
// the consumer appends to as it decides: append()). The ring is allocated once and lives as long
// as the Prefetcher; reset() drops what is scheduled and in flight after an error and keeps it.
// An I/O thread keeps reads in flight up to the ring's capacity; when an extent's bytes have
// arrived, TBB workers verify each frame's checksum and decode it (zstd or raw) into the slot's
// staging area; the consumer receives move-only ExtentHandles in plan order, and a handle's
// destruction frees its slot for the next extent (back-pressure: at most `slots` extents are
// read ahead of the consumer). Errors (I/O, checksum, decode) reach the consumer as a typed
// PrefetchError naming the extent, frame and file offset, when it asks for that extent.
//
//   schedule: e0 e1 e2 e3 e4 ...        ring (slots = 3):
//   I/O:    [read e0][read e1][read e2]  wait for a free slot  [read e3] ...
//   decode:          [dec e0] [dec e1]   [dec e2]
//   consumer:                 [compute e0]    [compute e1] ...
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <tbb/task_arena.h>

#include "common/error.hpp"
#include "common/result.hpp"
#include "common/trace.hpp"
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
  std::string file;            // the file read (a shard of a split model); empty: the prefetcher's path()
};

// The error as the engine throws it: a sluice::Exception whose context names the error's file
// (or `file` when it names none), the extent, frame, offset and errno.
Exception to_exception(const PrefetchError& error, const std::string& file);

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
  // Summed worker time (CPU time: the workers do not block) by kind: checksums of the stored
  // bytes, zstd frames decompressed, raw frames copied out of the read buffer (an extent that
  // cannot be used where it landed: pieces gathered, several ranges).
  std::chrono::nanoseconds decode_busy{0};
  std::chrono::nanoseconds verify_busy{0};
  std::chrono::nanoseconds copy_busy{0};
  std::chrono::nanoseconds consumer_wait{0}; // time next() spent blocked
};

class Prefetcher;

// Ring memory one extent needs: its stored bytes (each of its ranges) rounded up to the
// direct-I/O block, plus a decode buffer when any frame is compressed or the ranges are several
// (their frames are then gathered into it).
std::uint64_t extent_slot_bytes(const pack::ExtentInfo& extent);

// Splits an extent into pieces the prefetcher can read on their own, so that an extent larger
// than a ring slot (a big vocabulary's output head) streams through small slots: runs of whole
// frames, each as an ExtentInfo whose offset is rounded down to the direct-I/O block (its
// disk_bytes then count the gap before the first frame) and whose extent_slot_bytes stays within
// max_slot_bytes (a piece always holds at least one frame). Piece k's raw bytes follow piece
// k-1's in the original extent. Checksums still verify: they are seeded by file offset. A piece
// of an extent with ranges lies in one of them (its single range names the file).
std::vector<pack::ExtentInfo> extent_pieces(const pack::ExtentInfo& extent, std::uint64_t max_slot_bytes);

// A piece of an extent (below) and where its raw bytes start in the extent's.
struct ExtentPiece {
  pack::ExtentInfo info;
  std::uint64_t raw_begin = 0;
};
// The pieces (as extent_pieces cuts them) of only the frames that hold raw bytes [raw_begin,
// raw_end) of `extent`: a streamed block's tensors in the order the forward pass uses them. The
// first and last piece may hold bytes outside the range (whole frames).
std::vector<ExtentPiece> extent_range_pieces(const pack::ExtentInfo& extent, std::uint64_t raw_begin, std::uint64_t raw_end,
                                             std::uint64_t max_slot_bytes);

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

// The extents a ring must be able to hold: each slot fits the largest of them.
struct RingFor {
  explicit RingFor(std::vector<std::uint32_t> units) : extents(std::move(units)) {}
  std::vector<std::uint32_t> extents;
};

// Thread safety: one consumer thread calls append()/next()/cancel()/reset(); handles may be
// released from any thread. Every handle must be released before the Prefetcher is destroyed.
class Prefetcher {
  friend class ExtentHandle;  // release()

 public:
  // `extents` is the table of read units (a pack's extents, validated by pack::Pack::open, and
  // pieces of them); the ring is sized for the units `ring_for` lists (slots x (largest stored
  // unit + largest decoded unit that needs staging)), and only those may be appended. Nothing is
  // read until append(). `wrap` puts a layer over the I/O backend (tests: io::fault_wrapper).
  // Throws std::runtime_error when the file cannot be opened or memory not allocated.
  Prefetcher(std::string path, std::vector<pack::ExtentInfo> extents, const RingFor& ring_for, PrefetchOptions options = {},
             io::BackendWrapper wrap = {});
  // The same over several files (a split GGUF's shards): an extent's ranges name the file each
  // is read from (one reader per file); extents without ranges lie in paths[0].
  Prefetcher(std::vector<std::string> paths, std::vector<pack::ExtentInfo> extents, const RingFor& ring_for,
             PrefetchOptions options = {}, io::BackendWrapper wrap = {});
  // A fixed plan: the ring sized for `plan`'s extents, and the plan appended at once (an extent
  // may appear more than once).
  Prefetcher(std::string path, std::vector<pack::ExtentInfo> extents, const std::vector<std::uint32_t>& plan,
             PrefetchOptions options = {}, io::BackendWrapper wrap = {});
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Schedules `extent` after everything scheduled so far; its read starts once a slot frees.
  void append(std::uint32_t extent);
  // Blocks until the next scheduled extent is ready and returns it, or the error that stopped
  // it. With nothing scheduled, returns an error of kind `cancelled` saying so; check done().
  Result<ExtentHandle, PrefetchError> next();
  // Nothing scheduled is left to deliver.
  bool done() const;
  // Extents scheduled and not yet delivered.
  std::size_t pending() const;
  // Stops reading ahead; waits for reads in flight to land (the kernel may still be writing
  // into the ring) but not for the consumer. next() then returns `cancelled` until reset().
  void cancel();
  // After an error (delivered or not) or a consumer that gave up mid-schedule: cancels the reads
  // in flight (waits for them to land), drops everything scheduled and not delivered, forgets
  // the error, and starts again with an empty schedule on the same ring. Handles still alive
  // stay valid. Stats keep counting.
  void reset();

  PrefetchStats stats() const;
  const std::vector<pack::ExtentInfo>& extents() const { return extents_; }
  const std::string& path() const { return path_; }
  std::uint64_t ring_bytes() const { return ring_memory_.size(); }
  // The ring's memory: every slot, one after the other (tests check its page backing).
  std::span<const std::byte> ring_memory() const { return {ring_memory_.data(), ring_memory_.size()}; }
  const char* backend_name() const;
  const std::string& io_note() const;

 private:
  enum class SlotState { free, reading, decoding, ready, failed, consumed };
  // One read of a slot: `length` bytes (4096-aligned) of file `file` at `file_offset` into the
  // slot at `slot_offset`, of which `needed` must be in the file.
  struct Chunk {
    std::uint32_t file = 0;
    std::uint64_t file_offset = 0, slot_offset = 0;
    std::uint32_t length = 0;
    std::uint64_t needed = 0;
  };
  struct Slot {
    std::byte* disk = nullptr;     // in ring_memory_: stored bytes land here (4096-aligned)
    std::byte* staging = nullptr;  // decoded bytes for extents that are not all raw
    SlotState state = SlotState::free;
    std::size_t plan_position = 0;
    std::uint32_t extent = 0;
    std::uint64_t read_length = 0;  // bytes to read: extent disk span (each range) rounded up to 4096
    std::vector<Chunk> chunks;      // the reads, in order
    std::uint32_t chunks_total = 0, chunks_issued = 0, chunks_done = 0;
    std::chrono::steady_clock::time_point read_started;
    std::span<const std::byte> decoded;
    PrefetchError error;
  };

  void open_reader(std::size_t file);  // readers_[file] through wrap_, with the ring's buffers registered
  unsigned in_flight() const;          // over every reader
  void start_io_thread();
  void stop_io_thread();  // cancel(): the I/O thread gone, no read in flight, no decode running
  std::uint32_t scheduled_at(std::size_t position) const { return plan_[position - plan_base_]; }
  void io_loop();
  void note_io_busy();       // under mutex_, on the I/O thread
  bool assign_free_slots();  // under mutex_
  void issue_reads();        // under mutex_
  void on_read_complete(const io::ReadCompletion& completion);
  // Where frame `f` of `e` lies in a slot holding `e`'s stored bytes.
  static std::uint64_t frame_slot_offset(const pack::ExtentInfo& e, std::size_t f);
  void start_decode(unsigned slot);
  void decode_slot(unsigned slot);
  void release(unsigned slot);
  PrefetchError make_error(ErrorKind kind, std::uint32_t extent, std::uint32_t file, std::uint64_t file_offset, int sys_errno,
                           const std::string& cause) const;

  std::vector<std::string> paths_;
  std::string path_;  // paths_[0]
  std::vector<pack::ExtentInfo> extents_;
  std::vector<bool> fits_ring_;  // by extent: listed in RingFor, so append() may take it
  PrefetchOptions options_;
  io::BackendWrapper wrap_;
  std::vector<std::unique_ptr<io::Reader>> readers_;  // by file
  numa::PinnedBuffer ring_memory_;  // every slot's memory, one after the other
  std::vector<Slot> slots_;
  std::vector<iovec> regions_;  // the slots' read buffers, registered with the reader

  mutable std::mutex mutex_;
  std::condition_variable io_cv_;        // wakes the I/O thread: slot freed, cancel
  std::condition_variable consumer_cv_;  // wakes the consumer: slot ready/failed, cancel
  // Positions count every extent ever scheduled (they never repeat, across reset() too); plan_
  // holds those from plan_base_ on (entries behind assign_position_ are dropped as slots take them).
  std::deque<std::uint32_t> plan_;
  std::size_t plan_base_ = 0;
  std::size_t assign_position_ = 0;      // next schedule position to give a slot
  std::size_t next_position_ = 0;        // next schedule position to deliver
  bool cancelled_ = false;
  bool io_failed_ = false;               // stop assigning after the first error
  bool error_delivered_ = false;         // the consumer has seen an error: deliver nothing more
  unsigned handles_alive_ = 0;
  unsigned decodes_running_ = 0;
  std::condition_variable decode_cv_;

  PrefetchStats stats_;  // under mutex_, except the atomics below
  std::chrono::steady_clock::time_point io_busy_open_since_;  // under mutex_; epoch: no read in flight
  std::atomic<std::int64_t> decode_busy_ns_{0}, verify_busy_ns_{0}, copy_busy_ns_{0};
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
