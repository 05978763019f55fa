// Bad and oversized input at the coordinator's gRPC surface: raw bytes that do
// not parse, invalid UTF-8, spec and message size limits, and ListSweeps
// paging (which keeps a listing small whatever the specs hold). In-process
// coordinator on port 0, real stubs.
#include <grpcpp/generic/generic_stub.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/service.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StartTestCoordinator;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  return ctx;
}

v1::SweepSpec SyntheticSpec(const std::string& name, int tasks) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.mutable_synthetic()->set_tasks(tasks);
  return spec;
}

// A valid spec of about `bytes` serialized bytes: labels up to their limits
// (about 70 KB), then a seeds axis.
v1::SweepSpec BigSpec(const std::string& name, int bytes) {
  v1::SweepSpec spec = SyntheticSpec(name, 1);
  for (int i = 0;
       i < 64 && spec.ByteSizeLong() + 1200 < static_cast<size_t>(bytes); ++i) {
    (*spec.mutable_labels())[absl::StrCat("label-", i, std::string(100, 'k'))] =
        std::string(1000, 'v');
  }
  v1::ValueAxis* seeds = spec.mutable_grid()->add_axes()->mutable_seeds();
  for (int i = 0; spec.ByteSizeLong() < static_cast<size_t>(bytes); ++i) {
    seeds->add_values()->set_int_value(1'000'000'000 + i);
  }
  return spec;
}

class ServiceLimitsTest : public ::testing::Test {
 protected:
  void Start() {
    auto c = StartTestCoordinator(options_);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(c).value();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(
        coordinator_->address(), grpc::InsecureChannelCredentials(), args);
    stub_ = v1::Coordinator::NewStub(channel_);
  }
  void TearDown() override {
    if (coordinator_)
      ASSERT_TRUE(coordinator_->Shutdown(absl::Seconds(2)).ok());
  }

  grpc::Status Submit(const v1::SweepSpec& spec,
                      v1::SubmitSweepResponse* resp = nullptr) {
    v1::SubmitSweepRequest req;
    *req.mutable_spec() = spec;
    v1::SubmitSweepResponse ignored;
    return stub_->SubmitSweep(Ctx().get(), req, resp ? resp : &ignored);
  }

  // Sends `bytes` as the request of Coordinator/SubmitSweep.
  grpc::Status SubmitRaw(const std::string& bytes) {
    grpc::GenericStub generic(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    auto ctx = Ctx();
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    generic.UnaryCall(ctx.get(), "/sweepd.v1.Coordinator/SubmitSweep",
                      grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) {
                        std::lock_guard<std::mutex> lock(mu);
                        status = s;
                        done = true;
                        cv.notify_all();
                      });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    return status;
  }

  CoordinatorOptions options_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

// Defect: garbage or invalid-UTF-8 bytes got UNIMPLEMENTED with an empty
// message. They get INVALID_ARGUMENT saying what is wrong.
TEST_F(ServiceLimitsTest, BytesThatDoNotParseAreInvalidArgumentWithAReason) {
  Start();
  v1::SubmitSweepRequest req;
  *req.mutable_spec() = SyntheticSpec("valid-name", 1);
  std::string bytes = req.SerializeAsString();
  const size_t at = bytes.find("valid-name");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 2] = '\xff';
  grpc::Status bad_utf8 = SubmitRaw(bytes);
  EXPECT_EQ(bad_utf8.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_utf8.error_message(),
              AllOf(HasSubstr("SubmitSweepRequest does not parse"),
                    HasSubstr("spec.name is not valid UTF-8: byte 0xff"),
                    HasSubstr("strings must be UTF-8")));

  grpc::Status garbage = SubmitRaw("\xff\xff\xff\xff garbage");
  EXPECT_EQ(garbage.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(garbage.error_message(),
              HasSubstr("bytes are not a serialized SubmitSweepRequest"));

  // Well-formed raw bytes still submit.
  req.mutable_spec()->set_name("raw-but-fine");
  EXPECT_TRUE(SubmitRaw(req.SerializeAsString()).ok());
}

TEST_F(ServiceLimitsTest, SpecsOverTheSizeLimitAreRefusedAtSubmit) {
  options_.service.max_spec_bytes = 10'000;
  Start();
  grpc::Status big = Submit(BigSpec("too-big", 20'000));
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(big.error_message(),
              AllOf(HasSubstr("spec: is 2"),
                    HasSubstr("the limit is 10000 bytes (sweepd "
                              "--max-spec-bytes)")));
  EXPECT_TRUE(Submit(BigSpec("fits", 5'000)).ok());
}

TEST_F(ServiceLimitsTest, MessagesOverTheLimitAreResourceExhausted) {
  options_.service.max_message_bytes = 64 << 10;
  Start();
  grpc::Status big = Submit(BigSpec("huge-request", 100 << 10));
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << big.error_message();
  EXPECT_TRUE(Submit(BigSpec("small-request", 10 << 10)).ok());
}

TEST_F(ServiceLimitsTest, WorkerNamesHaveALengthLimit) {
  Start();
  auto gateway = v1::WorkerGateway::NewStub(channel_);
  v1::RegisterWorkerRequest req;
  req.set_name(std::string(257, 'w'));
  v1::RegisterWorkerResponse resp;
  grpc::Status s = gateway->RegisterWorker(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("name: is 257 bytes long"));
}

// Defect: two accepted large specs made ListSweeps exceed the message limit
// for every client, persistently. Listings carry no specs (unless asked, a
// few per page) and come in pages.
TEST_F(ServiceLimitsTest, ListSweepsIsPagedAndLeavesSpecsOut) {
  options_.service.max_message_bytes = 128 << 10;
  options_.service.max_spec_bytes = 100 << 10;
  Start();
  ASSERT_TRUE(Submit(BigSpec("large-a", 70 << 10)).ok());
  ASSERT_TRUE(Submit(BigSpec("large-b", 70 << 10)).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Submit(SyntheticSpec(absl::StrCat("small-", i), 1)).ok());
  }
  // Everything in one page, no specs: well under the limit.
  v1::ListSweepsResponse all;
  ASSERT_TRUE(
      stub_->ListSweeps(Ctx().get(), v1::ListSweepsRequest(), &all).ok());
  ASSERT_THAT(all.sweeps(), SizeIs(5));
  EXPECT_EQ(all.next_page_token(), "");
  for (const auto& s : all.sweeps()) EXPECT_FALSE(s.has_spec()) << s.name();

  // Pages of two, each sweep once (pages follow (created_ms, sweep_id):
  // sweeps submitted within one millisecond come in sweep id order).
  v1::ListSweepsRequest req;
  req.set_page_size(2);
  std::vector<std::string> names;
  int pages = 0;
  do {
    v1::ListSweepsResponse page;
    ASSERT_TRUE(stub_->ListSweeps(Ctx().get(), req, &page).ok());
    ASSERT_LE(page.sweeps_size(), 2);
    for (const auto& s : page.sweeps()) names.push_back(s.name());
    req.set_page_token(page.next_page_token());
    ++pages;
  } while (!req.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(names,
              ::testing::UnorderedElementsAre("large-a", "large-b", "small-0",
                                              "small-1", "small-2"));

  // Specs on request, one large spec per page.
  v1::ListSweepsRequest with_spec;
  with_spec.set_include_spec(true);
  with_spec.set_page_size(1);
  v1::ListSweepsResponse first;
  ASSERT_TRUE(stub_->ListSweeps(Ctx().get(), with_spec, &first).ok());
  ASSERT_THAT(first.sweeps(), SizeIs(1));
  EXPECT_EQ(first.sweeps(0).spec().name(), names[0]);  // the same order

  v1::ListSweepsRequest bad;
  bad.set_page_token("not-a-token");
  v1::ListSweepsResponse ignored;
  grpc::Status s = stub_->ListSweeps(Ctx().get(), bad, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_token"));
  with_spec.set_page_size(21);
  s = stub_->ListSweeps(Ctx().get(), with_spec, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("between 0 and 20"));
}

}  // namespace
}  // namespace sweepd
