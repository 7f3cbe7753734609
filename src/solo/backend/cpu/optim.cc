#include <cmath>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/kernel_util.h"

namespace solo {
namespace {

// One pass over memory instead of a dozen elementwise ops.
// p, g, m, v [N] -> p', m', v' [N]; lr, bias1, bias2 [] f32. See ir::adamw_update.
void adamw_update(const KernelCall& c) {
  const double b1 = c.attrs.f("beta1"), b2 = c.attrs.f("beta2"), eps = c.attrs.f("eps");
  const double wd = c.attrs.f("weight_decay");
  // In PyTorch's order: step = lr / bc1 and bc2_sqrt = sqrt(bc2), with bc = 1 - beta^t.
  const double lr = *c.in[4].as<float>();
  const double step_size = lr / (1.0 / *c.in[5].as<float>());
  const double bc2_sqrt = std::sqrt(1.0 / *c.in[6].as<float>());
  kernels::dispatch_float(c.op, c.in[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *p = c.in[0].as<T>(), *g = c.in[1].as<T>(), *m = c.in[2].as<T>(), *v = c.in[3].as<T>();
    T *po = c.out[0].as<T>(), *mo = c.out[1].as<T>(), *vo = c.out[2].as<T>();
    const T tb1 = T(b1), tb2 = T(b2), decay = T(1.0 - lr * wd), step = T(step_size);
    const T tbc2 = T(bc2_sqrt), teps = T(eps);
    const int64_t n = c.in[0].numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const T mi = m[i] + (T(1) - tb1) * (g[i] - m[i]);  // lerp, as torch
      const T vi = tb2 * v[i] + (T(1) - tb2) * g[i] * g[i];
      mo[i] = mi;
      vo[i] = vi;
      po[i] = p[i] * decay - step * (mi / (std::sqrt(vi) / tbc2 + teps));
    }
  });
}

}  // namespace

void register_cpu_optim_kernels(KernelTable& t) {
  t.set(OpKind::AdamWUpdate, adamw_update);
}

}  // namespace solo
