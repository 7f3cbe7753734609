#include <cstring>
#include <memory>

#include "solo/comm/comm_detail.h"
#include "solo/comm/communicator.h"
#include "solo/core/error.h"

namespace solo::comm {

namespace {

// One rank owns all the data: sums are identities and gathers/scatters are copies.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "local"; }

  void all_reduce_sum(void*, size_t, DType dtype) override {
    detail::check_sum_dtype(dtype, "all_reduce_sum");
  }
  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype) override {
    detail::check_sum_dtype(dtype, "reduce_scatter_sum");
    copy(send, recv, count * dtype_size(dtype));
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    copy(send, recv, count * dtype_size(dtype));
  }
  void broadcast(void*, size_t, int root) override {
    SOLO_CHECK(root == 0, "broadcast: root ", root,
               " is not a rank of the local communicator; use root 0");
  }
  void send(const void*, size_t, int, int) override { no_peer(); }
  void recv(void*, size_t, int, int) override { no_peer(); }
  void barrier() override {}
  // The one rank forms a group of one, or none.
  std::unique_ptr<Communicator> split(int color, int) override {
    if (color < 0) return nullptr;
    return std::make_unique<LocalCommunicator>();
  }

 private:
  static void copy(const void* src, void* dst, size_t bytes) {
    // memmove: callers may pass the same buffer for send and recv.
    if (bytes > 0 && src != dst) std::memmove(dst, src, bytes);
  }
  [[noreturn]] static void no_peer() {
    SOLO_FAIL("send/recv needs a peer; a local communicator has one rank");
  }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() {
  return std::make_unique<LocalCommunicator>();
}

}  // namespace solo::comm
