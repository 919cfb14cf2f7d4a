// Weights of one model under other block types (issue: conversion, zero-shot): the dense layout
// names the same tensors for every block type except the c_proj biases, which some types do not
// have (parallel). Converting drops those a new type lacks and adds zeros where the new type has
// them and the weights do not; everything else is reinterpreted as it is, under the new wiring.
#pragma once
#include <iosfwd>
#include <string>

#include "files/checkpoint.h"
#include "model/model_args.h"

namespace dgpt {

// `weights` (of a model of `from`) for a model of `to` (the same sizes, other model_type,
// tp_size, block_types, parallel_merge or vocab_parallel): c_proj biases dropped or added as
// zeros where the block types differ, wpe cropped to to.block_size. Throws UserError when the
// sizes differ.
DenseState convert_weights(const DenseState& weights, const ModelArgs& from, const ModelArgs& to);

// One or two lines saying what a conversion changes: which layers get another block type (and
// what that type computes differently), which c_proj biases are dropped or zero-filled, and
// whether the new model computes the same function (tp <-> dense at any tp_size, vocab_parallel,
// neox/ladder at another tp_size) or another one (zero-shot). Empty when nothing changes.
std::string describe_conversion(const ModelArgs& from, const ModelArgs& to);

// block_types of a model: the dense 'gpt' as n_layer x the baseline type (the same function).
std::vector<std::string> effective_block_types(const ModelArgs& a);

}  // namespace dgpt
