// wengert — everything: the tape, gradcheck, modes, errors and all built-in ops.
#pragma once

#include <wengert/errors.hpp>
#include <wengert/grad_mode.hpp>
#include <wengert/gradcheck.hpp>
#include <wengert/io/batches.hpp>
#include <wengert/io/idx.hpp>
#include <wengert/nn/linear.hpp>
#include <wengert/nn/optim.hpp>
#include <wengert/nn/serialize.hpp>
#include <wengert/ops.hpp>
#include <wengert/tape.hpp>
