// wengert — all built-in ops. One line per op header.
#pragma once

#include <wengert/ops/activations.hpp>
#include <wengert/ops/batch_norm.hpp>
#include <wengert/ops/bias_add.hpp>
#include <wengert/ops/conv2d.hpp>
#include <wengert/ops/elementwise.hpp>
#include <wengert/ops/linear.hpp>
#include <wengert/ops/losses.hpp>
#include <wengert/ops/matmul.hpp>
#include <wengert/ops/pool.hpp>
#include <wengert/ops/reduce.hpp>
#include <wengert/ops/softmax.hpp>
#include <wengert/ops/softplus.hpp>
// Issue 11: shape, indexing, axis reductions, more elementwise ops, nn ops.
#include <wengert/ops/bmm.hpp>
#include <wengert/ops/indexing.hpp>
#include <wengert/ops/nn_ops.hpp>
#include <wengert/ops/pointwise.hpp>
#include <wengert/ops/reduce_axis.hpp>
#include <wengert/ops/shape.hpp>
