// Transitional forwarding header: the Hugging Face config parser and the
// engine's ModelConfig live in common/model_config.h (namespace sweepd). This
// header keeps `engine::ModelConfig` (and LayerConfig, LayerKind, RopeType,
// LayerKindName) spelled the old way for code that has not moved over yet;
// new code includes common/model_config.h and drops the `engine::`. Delete
// this file once nothing includes it.
#ifndef SWEEPD_WORKER_ENGINE_CONFIG_H_
#define SWEEPD_WORKER_ENGINE_CONFIG_H_

#include "common/model_config.h"

namespace sweepd::engine {

using ::sweepd::LayerConfig;
using ::sweepd::LayerKind;
using ::sweepd::LayerKindName;
using ::sweepd::ModelConfig;
using ::sweepd::RopeType;

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_CONFIG_H_
