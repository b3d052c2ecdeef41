// InlineTask<R, N>: a move-only callable taking no arguments and returning R, whose captures
// live inside the object when they fit in N bytes (larger ones go to the heap).
//
// Why not std::function: it must be copyable (a queued call holds a communicator pin, which is
// not) and it allocates any capture over 16 bytes. A stream queues one task per call; allocating
// it on the caller's thread and freeing it on the worker's cost ~20% of an 8-byte stream call
// (docs/PERFORMANCE.md, "Streams"). C++23's std::move_only_function would do, C++20 has none.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace chorus {

template <typename R, size_t N>
class InlineTask {
 public:
  // Whether a callable of type F is stored inline (no allocation).
  template <typename F>
  static constexpr bool kInline =
      sizeof(F) <= N && alignof(F) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<F>;

  InlineTask() = default;
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, InlineTask>>>
  InlineTask(F&& f) {  // NOLINT(google-explicit-constructor): a task is made from any callable
    using D = std::decay_t<F>;
    if constexpr (kInline<D>)
      new (buf_) D(std::forward<F>(f));
    else
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
    ops_ = &kOps<D>;
  }
  InlineTask(InlineTask&& o) noexcept { take(o); }
  InlineTask& operator=(InlineTask&& o) noexcept {
    if (this != &o) {
      reset();
      take(o);
    }
    return *this;
  }
  InlineTask(const InlineTask&) = delete;
  InlineTask& operator=(const InlineTask&) = delete;
  ~InlineTask() { reset(); }

  explicit operator bool() const { return ops_ != nullptr; }
  R operator()() { return ops_->call(buf_); }
  // Destroys the callable (and what it captured) now.
  void reset() noexcept {
    if (!ops_) return;
    ops_->destroy(buf_);
    ops_ = nullptr;
  }

 private:
  struct Ops {
    R (*call)(void* buf);
    void (*move)(void* to, void* from) noexcept;  // leaves `from` destroyed
    void (*destroy)(void* buf) noexcept;
  };
  template <typename F>
  static F& inlined(void* b) {
    return *std::launder(reinterpret_cast<F*>(b));
  }
  template <typename F>
  static F*& boxed(void* b) {
    return *std::launder(reinterpret_cast<F**>(b));
  }
  template <typename F>
  static constexpr Ops makeOps() {
    if constexpr (kInline<F>) {
      return {[](void* b) -> R { return inlined<F>(b)(); },
              [](void* to, void* from) noexcept {
                new (to) F(std::move(inlined<F>(from)));
                inlined<F>(from).~F();
              },
              [](void* b) noexcept { inlined<F>(b).~F(); }};
    } else {
      return {[](void* b) -> R { return (*boxed<F>(b))(); },
              [](void* to, void* from) noexcept { *reinterpret_cast<F**>(to) = boxed<F>(from); },
              [](void* b) noexcept { delete boxed<F>(b); }};
    }
  }
  template <typename F>
  static constexpr Ops kOps = makeOps<F>();

  void take(InlineTask& o) noexcept {
    ops_ = o.ops_;
    if (!ops_) return;
    ops_->move(buf_, o.buf_);
    o.ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char buf_[N];
  const Ops* ops_ = nullptr;
};

}  // namespace chorus
