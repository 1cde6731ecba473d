// A connection's read buffer: bytes [begin, end) are read and not yet consumed; reads
// append at end. Buffers of the common size come from the worker's free list, so a
// keep-alive request allocates nothing.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

namespace ringproxy {

class IoBuffer {
 public:
  static constexpr size_t kSize = 16 * 1024;

  bool allocated() const { return data_ != nullptr; }
  char* data() { return data_.get(); }
  char* begin_ptr() { return data_.get() + begin_; }
  char* end_ptr() { return data_.get() + end_; }
  size_t size() const { return end_ - begin_; }
  size_t free_space() const { return cap_ - end_; }
  size_t capacity() const { return cap_; }
  size_t begin() const { return begin_; }
  size_t end() const { return end_; }
  void consume(size_t n) { begin_ += n; }
  void consume_to(const char* p) { begin_ = static_cast<size_t>(p - data_.get()); }
  void produced(size_t n) { end_ += n; }
  void clear() { begin_ = end_ = 0; }
  // Moves unconsumed bytes to the front. Only when nothing views the buffer.
  void compact() {
    if (begin_ == 0) return;
    std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  // Grows to `cap` bytes, keeping offsets (so views kept as offsets stay valid).
  void grow(size_t cap) {
    auto bigger = std::make_unique<char[]>(cap);
    if (data_) std::memcpy(bigger.get(), data_.get(), end_);
    data_ = std::move(bigger);
    cap_ = cap;
  }
  void attach(std::unique_ptr<char[]> mem, size_t cap) {
    data_ = std::move(mem);
    cap_ = cap;
    begin_ = end_ = 0;
  }
  std::unique_ptr<char[]> detach() {
    cap_ = begin_ = end_ = 0;
    return std::move(data_);
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t cap_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

// The worker's free list of kSize buffers. Single-threaded.
class BufferPool {
 public:
  void acquire(IoBuffer& buf) {
    if (buf.allocated()) return;
    if (free_.empty()) {
      buf.attach(std::make_unique<char[]>(IoBuffer::kSize), IoBuffer::kSize);
    } else {
      buf.attach(std::move(free_.back()), IoBuffer::kSize);
      free_.pop_back();
    }
  }
  // Returns the buffer's memory (if of the common size and the list is short).
  void release(IoBuffer& buf) {
    if (!buf.allocated()) return;
    const bool common = buf.capacity() == IoBuffer::kSize;
    auto mem = buf.detach();
    if (common && free_.size() < kMaxFree) free_.push_back(std::move(mem));
  }

  // OpenSSL's own buffers (a read and a write buffer of a full record each, per TLS
  // connection) are kept
  // between requests while this loop has at most kTlsKept TLS connections: freeing them
  // each time a connection goes idle and taking them again for its next request cost
  // 1,332 instructions a keep-alive request (bench/cost TLS=1). Beyond that, an idle
  // connection gives them back, so that many idle connections hold no buffers.
  static constexpr size_t kTlsKept = 256;
  void tls_opened() { ++tls_live_; }
  void tls_closed() { --tls_live_; }
  bool keep_tls_buffers() const { return tls_live_ <= kTlsKept; }
  size_t tls_live() const { return tls_live_; }

 private:
  size_t tls_live_ = 0;
  static constexpr size_t kMaxFree = 1024;
  std::vector<std::unique_ptr<char[]>> free_;
};

}  // namespace ringproxy
