// Optimizer updates on CUDA: one fused pass per parameter (see ir::adamw_update).
#include "solo/backend/cuda/cuda_util.cuh"

namespace solo {
namespace {

// p, g, m, v [n] -> p', m', v' [n]; scalars already folded on the host side of the launch.
template <class T>
__global__ void adamw_kernel(const T* p, const T* g, const T* m, const T* v, T* po, T* mo, T* vo,
                             int64_t n, const float* lr, const float* bias1, const float* bias2,
                             float b1, float b2, float eps, float wd) {
  // lr and bias corrections live on the device (0-d tensors), so read them here.
  const float step = *lr / (1.0f / *bias1);
  const float bc2_sqrt = sqrtf(1.0f / *bias2);
  const float decay = 1.0f - *lr * wd;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float gi = cuda::to_float(g[i]);
    const float mf = cuda::to_float(m[i]);
    const float mi = mf + (1.0f - b1) * (gi - mf);
    const float vi = b2 * cuda::to_float(v[i]) + (1.0f - b2) * gi * gi;
    mo[i] = cuda::from_float<T>(mi);
    vo[i] = cuda::from_float<T>(vi);
    po[i] = cuda::from_float<T>(cuda::to_float(p[i]) * decay -
                                step * (mi / (sqrtf(vi) / bc2_sqrt + eps)));
  }
}

void adamw_update(const KernelCall& c) {
  const auto b1 = static_cast<float>(c.attrs.f("beta1")),
             b2 = static_cast<float>(c.attrs.f("beta2"));
  const auto eps = static_cast<float>(c.attrs.f("eps")),
             wd = static_cast<float>(c.attrs.f("weight_decay"));
  const int64_t n = c.in[0].numel();
  if (n == 0) return;
  cuda::dispatch_f32_bf16(c.op, c.in[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    adamw_kernel<T><<<cuda::blocks_for(n, 256), 256, 0, cuda::stream_of(c)>>>(
        c.in[0].as<T>(), c.in[1].as<T>(), c.in[2].as<T>(), c.in[3].as<T>(), c.out[0].as<T>(),
        c.out[1].as<T>(), c.out[2].as<T>(), n, c.in[4].as<float>(), c.in[5].as<float>(),
        c.in[6].as<float>(), b1, b2, eps, wd);
  });
  cuda::check_launch("AdamWUpdate");
}

}  // namespace

void register_cuda_optim_kernels(KernelTable& t) {
  t.set(OpKind::AdamWUpdate, adamw_update);
}

}  // namespace solo
