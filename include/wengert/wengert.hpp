// wengert — everything, layer by layer: the engine (tape, handles, parameters, gradcheck,
// modes, errors), the ops, nn (layers, optimizers, parameter files) and io (datasets, batches).
// Link wengert::wengert. A program that needs less includes a layer's headers and links that
// layer alone: wengert::engine, wengert::ops, wengert::nn or wengert::io.
#pragma once

// engine
#include <wengert/errors.hpp>
#include <wengert/grad_mode.hpp>
#include <wengert/gradcheck.hpp>
#include <wengert/tape.hpp>
// ops
#include <wengert/ops.hpp>
// nn
#include <wengert/nn/checkpoint.hpp>
#include <wengert/nn/conv.hpp>
#include <wengert/nn/linear.hpp>
#include <wengert/nn/module.hpp>
#include <wengert/nn/optim.hpp>
#include <wengert/nn/schedule.hpp>
#include <wengert/nn/serialize.hpp>
#include <wengert/nn/state.hpp>
// io
#include <wengert/io/batches.hpp>
#include <wengert/io/idx.hpp>
