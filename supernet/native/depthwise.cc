// Depthwise convolution (NHWC, float32, SAME padding) for XLA on CPU, as XLA FFI handlers:
// forward, input gradient and weight gradient. XLA's own grouped convolution and its fused
// reductions run these at 1-2 GMAC/s on CPU. Here channels go in vectors (GCC's vector
// extension, built with -O3 -march=native by supernet/native.py), four output positions keep
// their accumulators in registers over a kernel row's taps, and input rows are copied into a
// zero-padded buffer so that no tap needs a bounds check: about 19 GMAC/s on one core of this
// project's machine (40% of its f32 peak), against 1-2 for XLA. Work is split over XLA's
// intra-op thread pool by images, the weight gradient with one partial sum per chunk of them.
//
// Shapes: x (B, H, W, C), w (K, K, C), y / g (B, Ho, Wo, C), Ho = ceil(H / stride).
// Attributes: stride, pad_top, pad_left (TensorFlow's SAME padding, computed in Python).

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {


constexpr int64_t kMaxKernel = 8;  // larger kernels are refused (Read)
constexpr int64_t kChunks = 8;     // the weight gradient's partial sums

struct Geometry {
  int64_t b, h, w, c, k, ho, wo, stride, pt, pl;
};

struct Work {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::condition_variable cv;
};

// Claims and runs indices until none is left. `fn` is dereferenced only for a claimed index,
// so a helper that starts after the caller returned never touches it. An exception (an
// allocation that failed) is recorded, not thrown through the FFI boundary.
void Drain(Work& work, int64_t n, const std::function<void(int64_t)>* fn) noexcept {
  int64_t i;
  while ((i = work.next.fetch_add(1)) < n) {
    try {
      (*fn)(i);
    } catch (...) {
      work.failed = true;
    }
    if (work.done.fetch_add(1) + 1 == n) {
      std::lock_guard<std::mutex> lock(work.mu);
      work.cv.notify_all();
    }
  }
}

// Runs fn(i) for i in [0, n) on the caller and the pool; false if any call threw. The caller
// claims indices too, so no thread ever waits for a task that cannot start (the caller may
// itself be a pool worker).
bool ParallelFor(ffi::ThreadPool& pool, int64_t n, const std::function<void(int64_t)>& fn) {
  auto work = std::make_shared<Work>();
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([work, n, fnp = &fn]() { Drain(*work, n, fnp); });
  }
  Drain(*work, n, &fn);
  std::unique_lock<std::mutex> lock(work->mu);
  work->cv.wait(lock, [&] { return work->done.load() == n; });
  return !work->failed;
}

ffi::Error Done(bool ok) {
  return ok ? ffi::Error::Success() : ffi::Error::Internal("hwnas depthwise: out of memory");
}

// Channels go in vectors of N floats (GCC's vector extension: one zmm with AVX-512), and a
// group of output positions keeps its accumulators in registers over the taps.
template <int N>
struct V {
  typedef float type __attribute__((vector_size(N * sizeof(float))));
  static type Load(const float* p) {
    type v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  }
  static void Store(float* p, type v) { __builtin_memcpy(p, &v, sizeof v); }
};

// Row buffers with zeros around them, so that taps need no bounds checks.
struct Rows {
  int64_t c, off, len;  // channels; positions before the data; positions in all
  std::vector<float> buf;
  Rows(int64_t c, int64_t off, int64_t n) : c(c), off(off), len(n), buf(n * c, 0.0f) {}
  // Copies `n` positions of `src` to positions off..off+n-1 (the zeros around stay zero).
  const float* Fill(const float* src, int64_t n) {
    std::memcpy(buf.data() + off * c, src, n * c * sizeof(float));
    return buf.data();
  }
};

// Four output positions: out[t*ostride] += sum_j in[t*istride + j*jstride] * w[j*wstride] for
// t < 4 and the N channels at each pointer. Named accumulators stay in registers (an array of
// them was kept on the stack by GCC).
template <int N>
inline void Tap4(float* out, int64_t ostride, const float* in, int64_t istride, int64_t jstride,
                 const float* w, int64_t wstride, int64_t taps) {
  using T = V<N>;
  typename T::type a0 = T::Load(out), a1 = T::Load(out + ostride);
  typename T::type a2 = T::Load(out + 2 * ostride), a3 = T::Load(out + 3 * ostride);
  for (int64_t j = 0; j < taps; ++j) {
    const typename T::type wv = T::Load(w + j * wstride);
    const float* src = in + j * jstride;
    a0 += T::Load(src) * wv;
    a1 += T::Load(src + istride) * wv;
    a2 += T::Load(src + 2 * istride) * wv;
    a3 += T::Load(src + 3 * istride) * wv;
  }
  T::Store(out, a0);
  T::Store(out + ostride, a1);
  T::Store(out + 2 * ostride, a2);
  T::Store(out + 3 * ostride, a3);
}

template <int N>
inline void Tap1(float* out, const float* in, int64_t jstride, const float* w, int64_t wstride,
                 int64_t taps) {
  using T = V<N>;
  typename T::type a = T::Load(out);
  for (int64_t j = 0; j < taps; ++j) a += T::Load(in + j * jstride) * T::Load(w + j * wstride);
  T::Store(out, a);
}

// `count` output positions, four at a time.
template <int N>
void TapRow(float* out, int64_t ostride, const float* in, int64_t istride, int64_t jstride,
            const float* w, int64_t wstride, int64_t taps, int64_t count) {
  int64_t t = 0;
  for (; t + 4 <= count; t += 4)
    Tap4<N>(out + t * ostride, ostride, in + t * istride, istride, jstride, w, wstride, taps);
  for (; t < count; ++t) Tap1<N>(out + t * ostride, in + t * istride, jstride, w, wstride, taps);
}

// TapRow over every channel: vectors of 16, then 8, then single channels.
void TapRowAll(float* out, int64_t ostride, const float* in, int64_t istride, int64_t jstride,
               const float* w, int64_t wstride, int64_t taps, int64_t count, int64_t c) {
  int64_t c0 = 0;
  for (; c0 + 16 <= c; c0 += 16)
    TapRow<16>(out + c0, ostride, in + c0, istride, jstride, w + c0, wstride, taps, count);
  for (; c0 + 8 <= c; c0 += 8)
    TapRow<8>(out + c0, ostride, in + c0, istride, jstride, w + c0, wstride, taps, count);
  for (; c0 < c; ++c0)
    TapRow<1>(out + c0, ostride, in + c0, istride, jstride, w + c0, wstride, taps, count);
}

// One output row of the forward pass: y[b, oy] = sum_i sum_j x[b, oy*s + i - pt, ox*s + j - pl]
// * w[i, j]. `rows` holds one input row with pl zeros before it.
void ForwardRow(const Geometry& g, const float* x, const float* w, float* y, int64_t b,
                int64_t oy, Rows& rows) {
  float* out = y + ((b * g.ho + oy) * g.wo) * g.c;
  std::fill(out, out + g.wo * g.c, 0.0f);
  for (int64_t i = 0; i < g.k; ++i) {
    const int64_t iy = oy * g.stride + i - g.pt;
    if (iy < 0 || iy >= g.h) continue;
    const float* in = rows.Fill(x + ((b * g.h + iy) * g.w) * g.c, g.w);
    TapRowAll(out, g.c, in, g.stride * g.c, g.c, w + i * g.k * g.c, g.c, g.k, g.wo, g.c);
  }
}

// One input-gradient row: dx[b, iy, ix] = sum over the (i, j) with iy = oy*s + i - pt and
// ix = ox*s + j - pl of dy[b, oy, ox] * w[i, j]. The columns ix = r + s*m of one phase r read
// consecutive ox for each tap j with (r + pl - j) divisible by s. `rows` holds one dy row with
// `off` zeros before it (and enough after).
void InputGradRow(const Geometry& g, const float* dy, const float* w, float* dx, int64_t b,
                  int64_t iy, Rows& rows) {
  float* out = dx + ((b * g.h + iy) * g.w) * g.c;
  std::fill(out, out + g.w * g.c, 0.0f);
  for (int64_t i = 0; i < g.k; ++i) {
    const int64_t ty = iy + g.pt - i;
    if (ty < 0 || ty % g.stride || ty / g.stride >= g.ho) continue;
    const float* in = rows.Fill(dy + ((b * g.ho + ty / g.stride) * g.wo) * g.c, g.wo);
    for (int64_t r = 0; r < g.stride && r < g.w; ++r) {
      const int64_t count = (g.w - r + g.stride - 1) / g.stride;  // columns r, r+s, ...
      const int64_t j0 = (r + g.pl) % g.stride;  // the phase's taps: j0, j0+s, ... (< k)
      const int64_t taps = (g.k - j0 + g.stride - 1) / g.stride;
      const int64_t base = (r + g.pl - j0) / g.stride + rows.off;  // buffer position of ox
      // for m = 0 and tap j0; each next tap reads one ox earlier
      TapRowAll(out + r * g.c, g.stride * g.c, in + base * g.c, g.c, -g.c,
                w + (i * g.k + j0) * g.c, g.stride * g.c, taps, count, g.c);
    }
  }
}

// The weight gradient of one image, added to part (K, K, C): for each output row and kernel
// row i, dw[i, j] += sum_ox x[iy, ox*s + j - pl] * dy[oy, ox], the taps j of one kernel row in
// registers (K is a template argument, so the loops unroll and the accumulators stay named).
template <int N, int K>
void WeightGradRow(const float* in, const float* grow, float* dst, int64_t wo, int64_t stride,
                   int64_t c) {
  using T = V<N>;
  typename T::type acc[K];
#pragma GCC unroll 16
  for (int j = 0; j < K; ++j) acc[j] = T::Load(dst + j * c);
  for (int64_t ox = 0; ox < wo; ++ox) {
    const typename T::type gv = T::Load(grow + ox * c);
    const float* src = in + ox * stride * c;
#pragma GCC unroll 16
    for (int j = 0; j < K; ++j) acc[j] += T::Load(src + j * c) * gv;
  }
#pragma GCC unroll 16
  for (int j = 0; j < K; ++j) T::Store(dst + j * c, acc[j]);
}

template <int K>
void WeightGradRows(const float* in, const float* grow, float* dst, int64_t wo, int64_t stride,
                    int64_t c) {
  int64_t c0 = 0;
  for (; c0 + 16 <= c; c0 += 16)
    WeightGradRow<16, K>(in + c0, grow + c0, dst + c0, wo, stride, c);
  for (; c0 + 8 <= c; c0 += 8) WeightGradRow<8, K>(in + c0, grow + c0, dst + c0, wo, stride, c);
  for (; c0 < c; ++c0) WeightGradRow<1, K>(in + c0, grow + c0, dst + c0, wo, stride, c);
}

void WeightGradImage(const Geometry& g, const float* x, const float* dy, float* part,
                     int64_t b, Rows& rows) {
  for (int64_t oy = 0; oy < g.ho; ++oy) {
    const float* grow = dy + ((b * g.ho + oy) * g.wo) * g.c;
    for (int64_t i = 0; i < g.k; ++i) {
      const int64_t iy = oy * g.stride + i - g.pt;
      if (iy < 0 || iy >= g.h) continue;
      const float* in = rows.Fill(x + ((b * g.h + iy) * g.w) * g.c, g.w);
      float* dst = part + i * g.k * g.c;
      switch (g.k) {
        // clang-format off
        case 1: WeightGradRows<1>(in, grow, dst, g.wo, g.stride, g.c); break;
        case 2: WeightGradRows<2>(in, grow, dst, g.wo, g.stride, g.c); break;
        case 3: WeightGradRows<3>(in, grow, dst, g.wo, g.stride, g.c); break;
        case 4: WeightGradRows<4>(in, grow, dst, g.wo, g.stride, g.c); break;
        case 5: WeightGradRows<5>(in, grow, dst, g.wo, g.stride, g.c); break;
        case 6: WeightGradRows<6>(in, grow, dst, g.wo, g.stride, g.c); break;
        case 7: WeightGradRows<7>(in, grow, dst, g.wo, g.stride, g.c); break;
        default: WeightGradRows<kMaxKernel>(in, grow, dst, g.wo, g.stride, g.c);
        // clang-format on
      }
    }
  }
}

// Row buffers: the forward pass and the weight gradient read input rows at ox*s + j - pl for
// ox < wo, j < k; the input gradient reads dy rows at (r + pl - j)/s + m, from -(k/s) to
// about wo + 1.
Rows InputRows(const Geometry& g) {
  return Rows(g.c, g.pl, std::max(g.pl + g.w, (g.wo - 1) * g.stride + g.k) + 1);
}
Rows GradRows(const Geometry& g) {
  const int64_t off = g.k / g.stride + 1;
  return Rows(g.c, off, off + g.wo + off + 1);
}

// Reads the geometry of a call, or says why the kernels cannot take it (the Python side passes
// consistent shapes; a wrong one would otherwise read out of bounds).
ffi::Error Read(Geometry* g, ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                ffi::Span<const int64_t> y, int64_t stride, int64_t pt, int64_t pl) {
  if (x.size() != 4 || w.size() != 3 || y.size() != 4) {
    return ffi::Error::InvalidArgument("hwnas depthwise: x and y must be NHWC, w (k, k, C)");
  }
  *g = Geometry{x[0], x[1], x[2], x[3], w[0], y[1], y[2], stride, pt, pl};
  if (g->k < 1 || g->k > kMaxKernel || w[1] != g->k || w[2] != g->c || y[3] != g->c ||
      y[0] != g->b) {
    return ffi::Error::InvalidArgument("hwnas depthwise: w must be (k, k, C) with k <= 8");
  }
  if (stride < 1 || stride > 2 || g->ho != (g->h + stride - 1) / stride ||
      g->wo != (g->w + stride - 1) / stride || pt < 0 || pt >= g->k || pl < 0 || pl >= g->k) {
    return ffi::Error::InvalidArgument("hwnas depthwise: inconsistent shapes or padding");
  }
  return ffi::Error::Success();
}

using RowFn = void (*)(const Geometry&, const float*, const float*, float*, int64_t, int64_t,
                       Rows&);

// The forward pass and the input gradient: reads the call's geometry (`grad`: `a` is dy and
// `out` is dx, else `a` is x and `out` is y), then runs `row` over the `rows` output rows of
// every image, images split over the pool, each task with its own row buffer.
template <RowFn row, int64_t Geometry::*rows, Rows (*buffer)(const Geometry&), bool grad>
ffi::Error PerRow(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> w,
                  ffi::ResultBuffer<ffi::F32> out, int64_t stride, int64_t pad_top,
                  int64_t pad_left) {
  Geometry g;
  ffi::Error err = grad ? Read(&g, out->dimensions(), w.dimensions(), a.dimensions(), stride,
                               pad_top, pad_left)
                        : Read(&g, a.dimensions(), w.dimensions(), out->dimensions(), stride,
                               pad_top, pad_left);
  if (err.failure()) return err;
  const float* in = a.typed_data();
  const float* wp = w.typed_data();
  float* o = out->typed_data();
  return Done(ParallelFor(pool, g.b, [&](int64_t b) {
    Rows buf = buffer(g);
    for (int64_t r = 0; r < g.*rows; ++r) row(g, in, wp, o, b, r, buf);
  }));
}

constexpr auto Forward = &PerRow<ForwardRow, &Geometry::ho, InputRows, false>;
constexpr auto InputGrad = &PerRow<InputGradRow, &Geometry::h, GradRows, true>;

ffi::Error WeightGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                      ffi::ResultBuffer<ffi::F32> dw, int64_t stride, int64_t pad_top,
                      int64_t pad_left) {
  Geometry g;
  ffi::Error err =
      Read(&g, x.dimensions(), dw->dimensions(), dy.dimensions(), stride, pad_top, pad_left);
  if (err.failure()) return err;
  const int64_t size = g.k * g.k * g.c;
  // One partial sum per chunk of images, added in a fixed order: the result depends neither
  // on which thread ran which chunk nor on how many threads there are.
  const int64_t chunks = std::min<int64_t>(g.b, kChunks);
  std::vector<float> parts(chunks * size, 0.0f);
  const float* xp = x.typed_data();
  const float* gp = dy.typed_data();
  const bool ok = ParallelFor(pool, chunks, [&](int64_t t) {
    Rows rows = InputRows(g);
    for (int64_t b = t * g.b / chunks; b < (t + 1) * g.b / chunks; ++b)
      WeightGradImage(g, xp, gp, parts.data() + t * size, b, rows);
  });
  if (!ok) return Done(ok);
  float* out = dw->typed_data();
  std::fill(out, out + size, 0.0f);
  for (int64_t t = 0; t < chunks; ++t)
    for (int64_t q = 0; q < size; ++q) out[q] += parts[t * size + q];
  return ffi::Error::Success();
}

}  // namespace

#define HWNAS_BIND()                           \
  ffi::Ffi::Bind()                             \
      .Ctx<ffi::ThreadPool>()                  \
      .Arg<ffi::Buffer<ffi::F32>>()            \
      .Arg<ffi::Buffer<ffi::F32>>()            \
      .Ret<ffi::Buffer<ffi::F32>>()            \
      .Attr<int64_t>("stride")                 \
      .Attr<int64_t>("pad_top")                \
      .Attr<int64_t>("pad_left")

XLA_FFI_DEFINE_HANDLER_SYMBOL(HwnasDepthwiseForward, Forward, HWNAS_BIND());
XLA_FFI_DEFINE_HANDLER_SYMBOL(HwnasDepthwiseInputGrad, InputGrad, HWNAS_BIND());
XLA_FFI_DEFINE_HANDLER_SYMBOL(HwnasDepthwiseWeightGrad, WeightGrad, HWNAS_BIND());
