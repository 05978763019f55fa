#include "worker/engine/comm_factory.h"

#include <thread>

#include "absl/strings/str_cat.h"
#ifdef SWEEPD_ENGINE_HAS_NCCL
#include "worker/comm/nccl_communicator.h"
#endif

namespace sweepd::engine {
namespace {

class InProcessComms : public RankComms {
 public:
  explicit InProcessComms(std::unique_ptr<comm::InProcessGroup> group)
      : group_(std::move(group)) {}
  comm::Communicator* rank(int r) override { return group_->rank(r); }

 private:
  std::unique_ptr<comm::InProcessGroup> group_;
};

#ifdef SWEEPD_ENGINE_HAS_NCCL
class NcclComms : public RankComms {
 public:
  explicit NcclComms(std::vector<std::unique_ptr<comm::Communicator>> comms)
      : comms_(std::move(comms)) {}
  comm::Communicator* rank(int r) override { return comms_.at(r).get(); }

 private:
  std::vector<std::unique_ptr<comm::Communicator>> comms_;
};
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<RankComms>> CreateRankComms(
    const std::string& device, int size, int first_device,
    absl::Duration timeout) {
  if (device == "cpu") {
    auto group = comm::InProcessGroup::Create(size, timeout);
    if (!group.ok()) return group.status();
    return std::unique_ptr<RankComms>(new InProcessComms(std::move(*group)));
  }
  if (device == "cuda") {
#ifdef SWEEPD_ENGINE_HAS_NCCL
    auto id = comm::NewNcclUniqueId();
    if (!id.ok()) return id.status();
    std::vector<absl::StatusOr<std::unique_ptr<comm::Communicator>>> made(size);
    std::vector<std::thread> threads;
    for (int r = 0; r < size; ++r) {
      threads.emplace_back([&, r] {
        made[r] = comm::CreateNcclCommunicator(*id, r, size, first_device + r,
                                               nullptr, timeout);
      });
    }
    for (auto& t : threads) t.join();
    std::vector<std::unique_ptr<comm::Communicator>> comms;
    for (int r = 0; r < size; ++r) {
      if (!made[r].ok()) return made[r].status();
      comms.push_back(std::move(*made[r]));
    }
    return std::unique_ptr<RankComms>(new NcclComms(std::move(comms)));
#else
    return absl::FailedPreconditionError(
        "device 'cuda' needs a build with SWEEPD_ENABLE_NCCL=ON (NCCL "
        "communicator backend)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device must be 'cpu' or 'cuda', got '", device, "'"));
}

std::string NcclVersion() {
#ifdef SWEEPD_ENGINE_HAS_NCCL
  return comm::NcclLibraryVersion();
#else
  return "";
#endif
}

}  // namespace sweepd::engine
