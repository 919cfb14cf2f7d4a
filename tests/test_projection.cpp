// The alpha-beta projection arithmetic, against cases computed by hand.
#include <catch2/catch.hpp>

#include "comm/interconnect.h"
#include "base/errors.h"

using Catch::Matchers::Contains;

TEST_CASE("ring all-reduce time: 2(n-1)·alpha + 2(n-1)/n · bytes / bandwidth", "[projection]") {
  const dgpt::Interconnect net{"t", 10e-6, 100e9, ""};
  // n = 4, 1 MB: 6 steps x 10 us = 60 us; 6/4 x 1e6 / 1e11 = 15 us
  CHECK(dgpt::ring_allreduce_seconds(net, 4, 1e6) == Approx(75e-6).epsilon(1e-12));
  // n = 2, 12,582,912 bytes (12 x 1024 x 1024): 2 x 10 us + 12582912 / 1e11 = 20 us + 125.82912 us
  CHECK(dgpt::ring_allreduce_seconds(net, 2, 12582912) == Approx(145.82912e-6).epsilon(1e-12));
  // n = 8, 0 bytes: latency only, 14 x 10 us
  CHECK(dgpt::ring_allreduce_seconds(net, 8, 0) == Approx(140e-6).epsilon(1e-12));
  CHECK(dgpt::ring_allreduce_seconds(net, 1, 1e9) == 0);  // one rank sends nothing
  // GPT-2 124M activations, B 12 x T 1024 x C 768 x 2 bytes on NVLink H100 (3 us, 450 GB/s), n = 8:
  // 14 x 3 us = 42 us; 14/8 x 18,874,368 / 450e9 = 73.4 us
  const auto nvlink = dgpt::parse_interconnect("nvlink");
  CHECK(dgpt::ring_allreduce_seconds(nvlink, 8, 12.0 * 1024 * 768 * 2) ==
        Approx(42e-6 + 1.75 * 18874368.0 / 450e9).epsilon(1e-12));
}

TEST_CASE("interconnect profiles: named, user-given, errors", "[projection]") {
  for (const char* name : {"nvlink", "pcie", "ib", "100gbe"}) {
    const auto net = dgpt::parse_interconnect(name);
    CHECK(net.name == name);
    CHECK(net.alpha_s > 0);
    CHECK(net.bandwidth_Bps > 0);
    CHECK_FALSE(net.source.empty());
  }
  CHECK(dgpt::parse_interconnect("100gbe").bandwidth_Bps == 12.5e9);
  CHECK(dgpt::parse_interconnect("ib").bandwidth_Bps == 50e9);
  const auto mine = dgpt::parse_interconnect("mynet:8:25");
  CHECK(mine.name == "mynet");
  CHECK(mine.alpha_s == Approx(8e-6));
  CHECK(mine.bandwidth_Bps == Approx(25e9));
  CHECK(dgpt::parse_interconnects("nvlink,ib,x:1:2").size() == 3);
  std::string message;
  try {
    dgpt::parse_interconnect("infiniband");
  } catch (const dgpt::UserError& e) {
    message = e.what();
  }
  CHECK_THAT(message, Contains("infiniband") && Contains("nvlink") && Contains("NAME:ALPHA_US:GBPS"));
  CHECK_THROWS_AS(dgpt::parse_interconnect("x:-1:2"), dgpt::UserError);
  CHECK_THROWS_AS(dgpt::parse_interconnect("x:1:0"), dgpt::UserError);
  CHECK_THROWS_AS(dgpt::parse_interconnect("x:a:2"), dgpt::UserError);
}

TEST_CASE("alpha-beta fit recovers the model from exact samples", "[projection]") {
  const dgpt::Interconnect truth{"t", 25e-6, 2e9, ""};
  std::vector<std::pair<double, double>> samples;
  for (double bytes = 4096; bytes <= 16 << 20; bytes *= 4)
    samples.emplace_back(bytes, dgpt::ring_allreduce_seconds(truth, 4, bytes));
  const auto fit = dgpt::fit_alpha_beta("fit", 4, samples);
  CHECK(fit.model.alpha_s == Approx(25e-6).epsilon(1e-9));
  CHECK(fit.model.bandwidth_Bps == Approx(2e9).epsilon(1e-9));
  CHECK(fit.r2 == Approx(1.0));
  // noisy samples: still close, R^2 below 1
  samples[2].second *= 1.1;
  const auto noisy = dgpt::fit_alpha_beta("fit", 4, samples);
  CHECK(noisy.r2 < 1.0);
  CHECK(noisy.model.bandwidth_Bps == Approx(2e9).epsilon(0.05));
  CHECK_THROWS_AS(dgpt::fit_alpha_beta("fit", 1, samples), dgpt::UserError);
}

TEST_CASE("alpha-beta fit weighs every size by its relative error", "[projection]") {
  // 5% noise on the largest all-reduce is 0.3 ms here, ten times the small ones' whole time: a
  // plain least-squares fit would trade the latency away for it, the relative fit keeps it.
  const dgpt::Interconnect truth{"t", 50e-6, 1e9, ""};
  std::vector<std::pair<double, double>> samples;
  samples.emplace_back(8.0, dgpt::ring_allreduce_seconds(truth, 2, 8.0));
  for (double bytes = 4096; bytes <= 16 << 20; bytes *= 4)
    samples.emplace_back(bytes, dgpt::ring_allreduce_seconds(truth, 2, bytes));
  samples.back().second *= 1.05;
  const auto fit = dgpt::fit_alpha_beta("fit", 2, samples);
  for (auto& [bytes, secs] : samples) {
    INFO(bytes << " bytes");
    CHECK(std::abs(dgpt::ring_allreduce_seconds(fit.model, 2, bytes) - secs) / secs < 0.05);
  }
  CHECK(fit.model.alpha_s == Approx(50e-6).epsilon(0.05));
}

TEST_CASE("projected step: T_rank + exposed collectives, overlap charged max(0, t - T_next)", "[projection]") {
  // A synthetic plan on a made-up link: alpha 10 us, 1 GB/s, n = 4 ranks (6 ring steps, 6/4 of the bytes).
  const dgpt::Interconnect net{"test", 10e-6, 1e9, "test"};
  const double t_ar = 6 * 10e-6 + 1.5 * 1e6 / 1e9;  // one all-reduce of 1 MB: 1.56 ms
  std::vector<dgpt::StepCollective> plan{
      {"forward_allreduce", 4, 1e6},                                 // blocking: 4 x 1.56 ms
      {"grad_norm_allreduce", 1, 8},                                  // 6 alpha + 12 ns
      {"overlapped_allreduce", 2, 1e6, true, 1.0e-3},                 // hides 1 ms of 1.56: 0.56 ms exposed each
      {"overlapped_hidden", 3, 1e6, true, 5.0e-3},                    // fully hidden behind 5 ms
  };
  CHECK(dgpt::exposed_seconds(plan[0], net, 4) == Approx(4 * t_ar).epsilon(1e-12));
  CHECK(dgpt::exposed_seconds(plan[1], net, 4) == Approx(60e-6 + 1.5 * 8 / 1e9).epsilon(1e-12));
  CHECK(dgpt::exposed_seconds(plan[2], net, 4) == Approx(2 * (t_ar - 1.0e-3)).epsilon(1e-12));
  CHECK(dgpt::exposed_seconds(plan[3], net, 4) == 0.0);
  const double t_rank = 0.020;  // a solo rank's measured step
  const double expected = 0.020 + 4 * t_ar + (60e-6 + 12e-9) + 2 * (t_ar - 1.0e-3);
  CHECK(dgpt::projected_step_seconds(t_rank, plan, net, 4) == Approx(expected).epsilon(1e-12));
  // One rank: nothing is sent, the step is the rank's compute.
  CHECK(dgpt::projected_step_seconds(t_rank, plan, net, 1) == t_rank);
  // MFU of the 4-device run: 1 TFLOP per step in 0.1 s on 4 devices of 10 TFLOP/s peak = 25%.
  CHECK(dgpt::model_flops_utilisation(1e12, 4, 0.1, 10e12) == Approx(0.25).epsilon(1e-12));
}
