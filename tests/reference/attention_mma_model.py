# A lane-level model of the tensor-core attention kernels (src/solo/backend/cuda/
# attention_mma.cu: forward, dq, dk/dv), for checking changes to them on a machine without a
# GPU. It follows the kernels statement by statement, one warp at a time and the block phase
# by phase (between __syncthreads), with the fragment layouts of the PTX ISA, ldmatrix with and
# without .trans, cp.async groups and zero-fill, bf16 rounding, and shared memory that starts
# as NaN (a read of a byte no copy wrote reaches an output). It compares every output with a
# float64 reference and exits non-zero beyond the bf16 tolerance.
#
#   python3 tests/reference/attention_mma_model.py        (numpy; about 15 s)
#
# It models the kernels as written: a change to the kernel must be made here too, and then
# this model says whether the change is right. A GPU run (tests/test_cuda_attention.cc) is
# still the proof.
#
# Fragment semantics from the PTX ISA:
#  A m16n8k16 bf16: a0,a1 (row g, col 2t+{0,1}); a2,a3 (row g+8); a4,a5 (row g, col+8); a6,a7 (row g+8, col+8)
#  B: b0,b1 (k 2t+{0,1}, n g); b2,b3 (k 2t+8+{0,1}, n g)
#  C: c0,c1 (row g, col 2t+{0,1}); c2,c3 (row g+8)
#  ldmatrix .x4: lanes 8i..8i+7 give row addresses of matrix i; non-trans lane l gets
#  (M[l/4][2(l%4)], M[l/4][2(l%4)+1]); .trans gets (M[2(l%4)][l/4], M[2(l%4)+1][l/4]).
# cp.async groups are modelled; reads of a region with a copy in flight (or written in the same
# phase by another thread) raise.
import numpy as np

L = np.arange(32)
G = L // 4
TT = L % 4
kTile, kPad, kNT, kThreads = 64, 8, 8, 128
LOG2E = np.float32(1.4426950408889634)
LN2 = np.float32(0.6931471805599453)
NEG = np.float32(-np.inf)


def bf16(x):
    x = np.asarray(x, np.float32).copy()
    b = x.view(np.uint32)
    nan = np.isnan(x)
    b += np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))
    b &= np.uint32(0xFFFF0000)
    x[nan] = np.nan
    return x


class Race(Exception):
    pass


class Block:
    """Shared memory + cp.async groups + phase tracking for one thread block."""

    def __init__(self, nelem, region):
        self.m = np.full(nelem, np.nan, np.float32)  # uninitialised smem = NaN
        self.f = {}  # float arrays (sOk etc.) by name
        self.region = region
        self.open = []  # copies issued, not committed
        self.groups = []  # committed, not complete: list of lists of (off, data2d, LD)
        self.inflight = set()  # regions with a copy issued and not yet waited
        self.landed_unsynced = set()  # waited but not yet __syncthreads (other threads' copies)
        self.read_phase = set()
        self.stored_phase = set()

    def reg_of(self, off):
        return ("smem", off // self.region)

    # cp.async of a whole tile (all threads of the block together)
    def cp_tile(self, off, data, LD):
        r = self.reg_of(off)
        if r in self.read_phase:
            raise Race(f"copy into {r} issued in a phase where it is read")
        self.inflight.add(r)
        self.open.append((off, data, LD))

    def commit(self):
        self.groups.append(self.open)
        self.open = []

    def wait(self, n):
        while len(self.groups) > n:
            grp = self.groups.pop(0)
            for off, data, LD in grp:
                rows, cols = data.shape
                for r in range(rows):
                    self.m[off + r * LD: off + r * LD + cols] = data[r]
                    self.m[off + r * LD + cols: off + r * LD + LD] = np.nan  # pad never written
                reg = self.reg_of(off)
                self.inflight.discard(reg)
                self.landed_unsynced.add(reg)

    def sync(self):
        self.landed_unsynced.clear()
        self.read_phase.clear()
        self.stored_phase.clear()

    def check_read(self, reg):
        if reg in self.inflight:
            raise Race(f"read of {reg} with a copy in flight")
        if reg in self.landed_unsynced:
            raise Race(f"read of {reg} after wait but before __syncthreads")
        if reg in self.stored_phase:
            raise Race(f"read of {reg} stored in the same phase")
        self.read_phase.add(reg)

    def ld(self, addr):  # addr: int array of element offsets -> values
        for r in set((int(a) // self.region) for a in np.ravel(addr)):
            self.check_read(("smem", r))
        return self.m[addr]

    def fstore(self, name, idx, vals):
        reg = (name, idx[0] // kTile)
        if reg in self.read_phase:
            raise Race(f"store to {reg} in a phase where it is read")
        self.stored_phase.add(reg)
        self.f[name][idx] = vals

    def fload(self, name, idx):
        idx = np.asarray(idx)
        for r in set(int(i) // kTile for i in np.ravel(idx)):
            self.check_read((name, r))
        return self.f[name][idx]


def lds32(B, addr):  # per-lane 32-bit load: (lo, hi)
    assert np.all(addr % 2 == 0)
    return np.stack([B.ld(addr), B.ld(addr + 1)], axis=1)


def ldmatrix_x4_trans(B, addr):
    assert np.all((addr * 2) % 16 == 0), "ldmatrix row address not 16-byte aligned"
    regs = []
    for i in range(4):
        rows = addr[8 * i: 8 * i + 8]
        M = np.stack([B.ld(rows[r] + np.arange(8)) for r in range(8)])  # 8x8
        regs.append(np.stack([M[2 * TT, G], M[2 * TT + 1, G]], axis=1))
    return regs


def mma(d, a, b0, b1):
    A = np.zeros((16, 16), np.float32)
    Bm = np.zeros((16, 8), np.float32)
    C = np.zeros((16, 8), np.float32)
    for e in range(2):
        A[G, 2 * TT + e] = a[0][:, e]
        A[G + 8, 2 * TT + e] = a[1][:, e]
        A[G, 2 * TT + 8 + e] = a[2][:, e]
        A[G + 8, 2 * TT + 8 + e] = a[3][:, e]
        Bm[2 * TT + e, G] = b0[:, e]
        Bm[2 * TT + 8 + e, G] = b1[:, e]
        C[G, 2 * TT + e] = d[:, e]
        C[G + 8, 2 * TT + e] = d[:, 2 + e]
    assert not np.isnan(A).any() and not np.isnan(Bm).any(), "mma operand reads garbage"
    D = (A.astype(np.float64) @ Bm.astype(np.float64)).astype(np.float32) + C
    out = np.empty((32, 4), np.float32)
    for e in range(2):
        out[:, e] = D[G, 2 * TT + e]
        out[:, 2 + e] = D[G + 8, 2 * TT + e]
    return out


def pack(lo, hi):
    return np.stack([bf16(lo), bf16(hi)], axis=1)


def load_a(B, LD, s, r0, c0):
    p = s + (r0 + G) * LD + c0 + 2 * TT
    return [lds32(B, p), lds32(B, p + 8 * LD), lds32(B, p + 8), lds32(B, p + 8 * LD + 8)]


def c_to_a(c, kk):
    return [pack(c[2 * kk][:, 0], c[2 * kk][:, 1]), pack(c[2 * kk][:, 2], c[2 * kk][:, 3]),
            pack(c[2 * kk + 1][:, 0], c[2 * kk + 1][:, 1]),
            pack(c[2 * kk + 1][:, 2], c[2 * kk + 1][:, 3])]


def mma_c_by_tile(B, D, NT, acc, c, x):
    LD = D + kPad
    base = x + ((L & 7) + ((L >> 3) & 1) * 8) * LD + (L >> 4) * 8
    for kk in range(NT // 2):
        a = c_to_a(c, kk)
        for dp in range(D // 16):
            b = ldmatrix_x4_trans(B, base + kk * 16 * LD + dp * 16)
            acc[2 * dp] = mma(acc[2 * dp], a, b[0], b[1])
            acc[2 * dp + 1] = mma(acc[2 * dp + 1], a, b[2], b[3])


def mma_rows_by_rows(B, D, NT, c, sx, r0, y):
    LD = D + kPad
    for ks in range(D // 16):
        a = load_a(B, LD, sx, r0, ks * 16)
        for nt in range(NT):
            p = y + (nt * 8 + G) * LD + ks * 16 + 2 * TT
            c[nt] = mma(c[nt], a, lds32(B, p), lds32(B, p + 8))


def tile_data(x, r0, b, h, Lx):
    # x [B, L, H, D] (bf16 values) -> rows r0..r0+63 (zeros past Lx)
    D = x.shape[3]
    out = np.zeros((kTile, D), np.float32)
    n = max(0, min(kTile, Lx - r0))
    if n > 0:
        out[:n] = x[b, r0:r0 + n, h, :]
    return out


def key_ok(mask, b, k0, S):
    ok = np.zeros(kTile, np.float32)
    for j in range(kTile):
        s = k0 + j
        ok[j] = 1.0 if (s < S and (mask is None or mask[b, s] != 0)) else 0.0
    return ok


def store_rows(x, acc, mul, l0, b, h, Lx, D):
    for r in range(2):
        l = l0 + G + 8 * r
        for lane in range(32):
            if l[lane] >= Lx:
                continue
            for dt in range(D // 8):
                v = pack(acc[dt][lane:lane + 1, 2 * r] * mul[r][lane],
                         acc[dt][lane:lane + 1, 2 * r + 1] * mul[r][lane])[0]
                col = dt * 8 + 2 * TT[lane]
                x[b, l[lane], h, col] = v[0]
                x[b, l[lane], h, col + 1] = v[1]


def quad_reduce(v, op):
    v = np.asarray(v, np.float32)
    v1 = op(v, v[L ^ 1])
    return op(v1, v1[L ^ 2])


# ---------------------------------------------------------------- forward
def fwd(q, k, v, mask, scale, causal):
    Bn, T, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    LD = D + kPad
    out = np.zeros_like(q)
    lse = np.full((Bn, Hq, T), np.nan, np.float32)
    gx = (T + kTile - 1) // kTile
    for b in range(Bn):
        for h in range(Hq):
            for bx in range(gx):
                blk = Block(5 * kTile * LD, kTile * LD)
                blk.f["ok"] = np.full(2 * kTile, np.nan, np.float32)
                sQ, sK = 0, kTile * LD
                sV = sK + 2 * kTile * LD
                q0 = (gx - 1 - bx) * kTile
                hk = h // group
                kend = min(S, q0 + kTile) if causal else S
                ntiles = (kend + kTile - 1) // kTile
                blk.cp_tile(sQ, tile_data(q, q0, b, h, T), LD)
                if ntiles > 0:
                    blk.cp_tile(sK, tile_data(k, 0, b, hk, S), LD)
                    blk.cp_tile(sV, tile_data(v, 0, b, hk, S), LD)
                    blk.fstore("ok", np.arange(kTile), key_ok(mask, b, 0, S))
                blk.commit()
                blk.wait(0)
                blk.sync()
                sl = np.float32(scale) * LOG2E
                W = []
                for w in range(4):
                    qf = [load_a(blk, LD, sQ, w * 16, ks * 16) for ks in range(D // 16)]
                    W.append(dict(qf=qf, m=[np.full(32, NEG), np.full(32, NEG)],
                                  l=[np.zeros(32, np.float32), np.zeros(32, np.float32)],
                                  o=[np.zeros((32, 4), np.float32) for _ in range(D // 8)],
                                  row0=q0 + w * 16 + G))
                for it in range(ntiles):
                    buf, k0 = it & 1, it * kTile
                    if it + 1 < ntiles:
                        nb = buf ^ 1
                        blk.cp_tile(sK + nb * kTile * LD, tile_data(k, k0 + kTile, b, hk, S), LD)
                        blk.cp_tile(sV + nb * kTile * LD, tile_data(v, k0 + kTile, b, hk, S), LD)
                        blk.fstore("ok", nb * kTile + np.arange(kTile),
                                   key_ok(mask, b, k0 + kTile, S))
                    blk.commit()
                    blk.wait(1)
                    blk.sync()
                    cK = sK + buf * kTile * LD
                    cV = sV + buf * kTile * LD
                    for w in range(4):
                        st = W[w]
                        s = [np.zeros((32, 4), np.float32) for _ in range(kNT)]
                        for ks in range(D // 16):
                            for nt in range(kNT):
                                kp = cK + (nt * 8 + G) * LD + ks * 16 + 2 * TT
                                s[nt] = mma(s[nt], st["qf"][ks], lds32(blk, kp), lds32(blk, kp + 8))
                        edge = mask is not None or k0 + kTile > S or (causal and k0 + kTile > q0)
                        mx = [np.full(32, NEG), np.full(32, NEG)]
                        for nt in range(kNT):
                            for e in range(4):
                                j = nt * 8 + 2 * TT + (e & 1)
                                r = e >> 1
                                x = s[nt][:, e] * sl
                                okj = blk.fload("ok", buf * kTile + j)
                                if edge:
                                    bad = (okj == 0) | (causal & (k0 + j > st["row0"] + 8 * r))
                                    x = np.where(bad, NEG, x).astype(np.float32)
                                s[nt][:, e] = x
                                mx[r] = np.fmax(mx[r], x)
                        alpha, mu = [None, None], [None, None]
                        for r in range(2):
                            mn = np.fmax(st["m"][r], quad_reduce(mx[r], np.fmax))
                            mu[r] = np.where(mn == NEG, np.float32(0), mn).astype(np.float32)
                            with np.errstate(invalid="ignore"):
                                alpha[r] = np.exp2(st["m"][r] - mu[r]).astype(np.float32)
                            st["m"][r] = mn
                        rs = [np.zeros(32, np.float32), np.zeros(32, np.float32)]
                        for nt in range(kNT):
                            for e in range(4):
                                s[nt][:, e] = np.exp2(s[nt][:, e] - mu[e >> 1])
                                rs[e >> 1] += s[nt][:, e]
                        for r in range(2):
                            st["l"][r] = st["l"][r] * alpha[r] + rs[r]
                        for dt in range(D // 8):
                            st["o"][dt][:, 0:2] *= alpha[0][:, None]
                            st["o"][dt][:, 2:4] *= alpha[1][:, None]
                        mma_c_by_tile(blk, D, kNT, st["o"], s, cV)
                    blk.sync()
                for w in range(4):
                    st = W[w]
                    inv = []
                    for r in range(2):
                        st["l"][r] = quad_reduce(st["l"][r], np.add)
                        with np.errstate(divide="ignore"):
                            inv.append(np.where(st["l"][r] > 0, 1 / st["l"][r], 0).astype(np.float32))
                    store_rows(out, st["o"], inv, q0 + w * 16, b, h, T, D)
                    for lane in range(0, 32, 4):
                        for r in range(2):
                            row = st["row0"][lane] + 8 * r
                            if row < T:
                                lr = st["l"][r][lane]
                                lse[b, h, row] = (st["m"][r][lane] + np.log2(lr)) * LN2 if lr > 0 else NEG
    return out, lse


# ---------------------------------------------------------------- dq
def dq_kernel(q, k, v, lse, dout, delta, mask, scale, causal):
    Bn, T, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    LD = D + kPad
    dq = np.full_like(q, np.nan)
    gx = (T + kTile - 1) // kTile
    for b in range(Bn):
        for h in range(Hq):
            for bx in range(gx):
                blk = Block(6 * kTile * LD, kTile * LD)
                blk.f["ok"] = np.full(2 * kTile, np.nan, np.float32)
                sQ, sDO = 0, kTile * LD
                sK = sDO + kTile * LD
                sV = sK + 2 * kTile * LD
                q0 = (gx - 1 - bx) * kTile
                hk = h // group
                kend = min(S, q0 + kTile) if causal else S
                ntiles = (kend + kTile - 1) // kTile
                W = []
                for w in range(4):
                    row0 = q0 + w * 16 + G
                    lse2, di = [], []
                    for r in range(2):
                        row = row0 + 8 * r
                        rc = np.minimum(row, T - 1)
                        lse2.append(np.where(row < T, lse[b, h, rc] * LOG2E, NEG).astype(np.float32))
                        di.append(np.where(row < T, delta[b, h, rc], 0).astype(np.float32))
                    W.append(dict(row0=row0, lse2=lse2, di=di,
                                  acc=[np.zeros((32, 4), np.float32) for _ in range(D // 8)]))
                blk.cp_tile(sQ, tile_data(q, q0, b, h, T), LD)
                blk.cp_tile(sDO, tile_data(dout, q0, b, h, T), LD)
                if ntiles > 0:
                    blk.cp_tile(sK, tile_data(k, 0, b, hk, S), LD)
                    blk.cp_tile(sV, tile_data(v, 0, b, hk, S), LD)
                    blk.fstore("ok", np.arange(kTile), key_ok(mask, b, 0, S))
                blk.commit()
                sl = np.float32(scale) * LOG2E
                for it in range(ntiles):
                    buf, k0 = it & 1, it * kTile
                    if it + 1 < ntiles:
                        nb = buf ^ 1
                        blk.cp_tile(sK + nb * kTile * LD, tile_data(k, k0 + kTile, b, hk, S), LD)
                        blk.cp_tile(sV + nb * kTile * LD, tile_data(v, k0 + kTile, b, hk, S), LD)
                        blk.fstore("ok", nb * kTile + np.arange(kTile),
                                   key_ok(mask, b, k0 + kTile, S))
                    blk.commit()
                    blk.wait(1)
                    blk.sync()
                    cK = sK + buf * kTile * LD
                    cV = sV + buf * kTile * LD
                    for w in range(4):
                        st = W[w]
                        s = [np.zeros((32, 4), np.float32) for _ in range(kNT)]
                        dp = [np.zeros((32, 4), np.float32) for _ in range(kNT)]
                        mma_rows_by_rows(blk, D, kNT, s, sQ, w * 16, cK)
                        mma_rows_by_rows(blk, D, kNT, dp, sDO, w * 16, cV)
                        edge = mask is not None or k0 + kTile > S or (causal and k0 + kTile > q0)
                        for nt in range(kNT):
                            for e in range(4):
                                j = nt * 8 + 2 * TT + (e & 1)
                                r = e >> 1
                                okj = blk.fload("ok", buf * kTile + j)
                                vis = (st["lse2"][r] != NEG) & ~(
                                    edge & ((okj == 0) | (causal & (k0 + j > st["row0"] + 8 * r))))
                                with np.errstate(invalid="ignore", over="ignore"):
                                    pr = np.where(vis, np.exp2(s[nt][:, e] * sl - st["lse2"][r]), 0)
                                s[nt][:, e] = (pr * (dp[nt][:, e] - st["di"][r])).astype(np.float32)
                        mma_c_by_tile(blk, D, kNT, st["acc"], s, cK)
                    blk.sync()
                if ntiles == 0:
                    blk.wait(0)
                for w in range(4):
                    st = W[w]
                    mul = [np.full(32, scale, np.float32)] * 2
                    store_rows(dq, st["acc"], mul, q0 + w * 16, b, h, T, D)
    return dq


# ---------------------------------------------------------------- dk, dv
def dkv_kernel(q, k, v, lse, dout, delta, mask, scale, causal):
    Bn, T, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    LD = D + kPad
    dk = np.full_like(k, np.nan)
    dv = np.full_like(v, np.nan)
    gx = (S + kTile - 1) // kTile
    for b in range(Bn):
        for hk in range(Hkv):
            for bx in range(gx):
                blk = Block(6 * kTile * LD, kTile * LD)
                blk.f["lse"] = np.full(2 * kTile, np.nan, np.float32)
                blk.f["di"] = np.full(2 * kTile, np.nan, np.float32)
                sK, sV = 0, kTile * LD
                sQ = sV + kTile * LD
                sDO = sQ + 2 * kTile * LD
                k0 = bx * kTile
                qstart = k0 if causal else 0
                qtiles = (T - qstart + kTile - 1) // kTile if T > qstart else 0
                n = group * qtiles
                W = []
                for w in range(4):
                    key0 = k0 + w * 16 + G
                    kok = []
                    for r in range(2):
                        key = key0 + 8 * r
                        kok.append(np.array([kk < S and (mask is None or mask[b, kk] != 0)
                                             for kk in key]))
                    W.append(dict(key0=key0, kok=kok,
                                  ak=[np.zeros((32, 4), np.float32) for _ in range(D // 8)],
                                  av=[np.zeros((32, 4), np.float32) for _ in range(D // 8)]))

                def load_pair(i, nb):
                    h = hk * group + i // qtiles
                    q0 = qstart + (i % qtiles) * kTile
                    blk.cp_tile(sQ + nb * kTile * LD, tile_data(q, q0, b, h, T), LD)
                    blk.cp_tile(sDO + nb * kTile * LD, tile_data(dout, q0, b, h, T), LD)
                    rows = q0 + np.arange(kTile)
                    rc = np.minimum(rows, T - 1)
                    blk.fstore("lse", nb * kTile + np.arange(kTile),
                               np.where(rows < T, lse[b, h, rc] * LOG2E, NEG).astype(np.float32))
                    blk.fstore("di", nb * kTile + np.arange(kTile),
                               np.where(rows < T, delta[b, h, rc], 0).astype(np.float32))

                blk.cp_tile(sK, tile_data(k, k0, b, hk, S), LD)
                blk.cp_tile(sV, tile_data(v, k0, b, hk, S), LD)
                if n > 0:
                    load_pair(0, 0)
                blk.commit()
                sl = np.float32(scale) * LOG2E
                for it in range(n):
                    buf = it & 1
                    q0 = qstart + (it % qtiles) * kTile
                    if it + 1 < n:
                        load_pair(it + 1, buf ^ 1)
                    blk.commit()
                    blk.wait(1)
                    blk.sync()
                    cQ = sQ + buf * kTile * LD
                    cDO = sDO + buf * kTile * LD
                    diag = causal and q0 == k0
                    for w in range(4):
                        st = W[w]
                        for half in range(2):
                            NT = kNT // 2
                            i0 = half * (kTile // 2)
                            hQ = cQ + i0 * LD
                            hDO = cDO + i0 * LD
                            s = [np.zeros((32, 4), np.float32) for _ in range(NT)]
                            mma_rows_by_rows(blk, D, NT, s, sK, w * 16, hQ)
                            for nt in range(NT):
                                for e in range(4):
                                    i = i0 + nt * 8 + 2 * TT + (e & 1)
                                    r = e >> 1
                                    l2 = blk.fload("lse", buf * kTile + i)
                                    vis = st["kok"][r] & (l2 != NEG) & ~(
                                        diag & (st["key0"] + 8 * r > q0 + i))
                                    with np.errstate(invalid="ignore", over="ignore"):
                                        s[nt][:, e] = np.where(vis, np.exp2(s[nt][:, e] * sl - l2), 0)
                            mma_c_by_tile(blk, D, NT, st["av"], s, hDO)
                            dpp = [np.zeros((32, 4), np.float32) for _ in range(NT)]
                            mma_rows_by_rows(blk, D, NT, dpp, sV, w * 16, hDO)
                            for nt in range(NT):
                                for e in range(4):
                                    di = blk.fload("di", buf * kTile + i0 + nt * 8 + 2 * TT + (e & 1))
                                    s[nt][:, e] *= dpp[nt][:, e] - di
                            mma_c_by_tile(blk, D, NT, st["ak"], s, hQ)
                    blk.sync()
                if n == 0:
                    blk.wait(0)
                for w in range(4):
                    st = W[w]
                    store_rows(dk, st["ak"], [np.full(32, scale, np.float32)] * 2,
                               k0 + w * 16, b, hk, S, D)
                    store_rows(dv, st["av"], [np.ones(32, np.float32)] * 2, k0 + w * 16, b, hk, S, D)
    return dk, dv


# ---------------------------------------------------------------- reference (float64)
def reference(q, k, v, dout, mask, scale, causal):
    Bn, T, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    out = np.zeros_like(q)
    lse = np.full((Bn, Hq, T), -np.inf)
    dq = np.zeros_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    for b in range(Bn):
        for h in range(Hq):
            hk = h // group
            s = scale * q[b, :, h] @ k[b, :, hk].T
            vis = np.ones((T, S), bool)
            if mask is not None:
                vis &= (mask[b] != 0)[None, :]
            if causal:
                vis &= np.arange(S)[None, :] <= np.arange(T)[:, None]
            s = np.where(vis, s, -np.inf)
            m = s.max(1, keepdims=True)
            mm = np.where(np.isfinite(m), m, 0)
            e = np.exp(s - mm)
            l = e.sum(1, keepdims=True)
            P = np.where(l > 0, e / np.where(l > 0, l, 1), 0)
            out[b, :, h] = P @ v[b, :, hk]
            lse[b, h] = np.where(l[:, 0] > 0, mm[:, 0] + np.log(np.where(l[:, 0] > 0, l[:, 0], 1)),
                                 -np.inf)
            dP = dout[b, :, h] @ v[b, :, hk].T
            Dl = (dout[b, :, h] * out[b, :, h]).sum(1, keepdims=True)
            dS = P * (dP - Dl)
            dq[b, :, h] = scale * dS @ k[b, :, hk]
            dk[b, :, hk] += scale * dS.T @ q[b, :, h]
            dv[b, :, hk] += P.T @ dout[b, :, h]
    return out, lse, dq, dk, dv


def run_case(Bn, T, S, Hq, Hkv, D, causal, use_mask, seed=0, mask_rows_full=False):
    rng = np.random.default_rng(seed)
    q = bf16(rng.standard_normal((Bn, T, Hq, D)))
    k = bf16(rng.standard_normal((Bn, S, Hkv, D)))
    v = bf16(rng.standard_normal((Bn, S, Hkv, D)))
    dout = bf16(rng.standard_normal((Bn, T, Hq, D)))
    mask = None
    if use_mask:
        mask = (rng.random((Bn, S)) > 0.3).astype(np.float32)
        if mask_rows_full:
            mask[0, :4] = 0  # causal queries 0..3 of batch 0 see nothing
    scale = 1.0 / np.sqrt(D)
    out, lse = fwd(q, k, v, mask, scale, causal)
    ro, rl, rdq, rdk, rdv = reference(q, k, v, dout, mask, scale, causal)
    # delta from the kernel's bf16 out, like attention_delta_kernel
    delta = (out.astype(np.float64) * dout).sum(-1).transpose(0, 2, 1).astype(np.float32)
    dq = dq_kernel(q, k, v, lse, dout, delta, mask, scale, causal)
    dk, dv = dkv_kernel(q, k, v, lse, dout, delta, mask, scale, causal)

    def err(a, r):
        a = a.astype(np.float64)
        fin = np.isfinite(r)
        assert np.array_equal(np.isneginf(a), np.isneginf(r)), "-inf pattern differs"
        assert not np.isnan(a).any(), "NaN in kernel output"
        d = np.abs(a[fin] - r[fin]).max() if fin.any() else 0.0
        return d / (np.abs(r[fin]).max() + 1e-12)

    res = dict(out=err(out, ro), lse=err(lse, rl), dq=err(dq, rdq), dk=err(dk, rdk), dv=err(dv, rdv))
    print(f"B{Bn} T{T} S{S} Hq{Hq} Hkv{Hkv} D{D} causal={causal} mask={use_mask}:",
          {k_: f"{v_:.2e}" for k_, v_ in res.items()})
    return res


if __name__ == "__main__":
    import sys
    cases = [
        (1, 100, 100, 2, 1, 64, True, True, 0, True),
        (1, 70, 130, 2, 2, 128, False, True, 1, False),
        (1, 130, 70, 4, 1, 64, False, False, 2, False),
        (1, 128, 128, 2, 2, 64, True, False, 3, False),
    ]
    worst = 0.0
    for c in cases:
        worst = max(worst, max(run_case(*c).values()))
    # bf16 inputs and P/dS rounded to bf16 before the second products: about 2^-8 relative.
    print(f"largest error relative to the reference's largest magnitude: {worst:.2e}")
    sys.exit(0 if worst < 2e-2 else 1)
