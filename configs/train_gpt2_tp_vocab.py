# GPT-2 (124M) on OpenWebText, tensor parallel over 4 shards: every block Megatron-style 'tp', and the vocabulary split too
# (vocab_parallel: Megatron's VocabParallelEmbedding and vocab-parallel cross-entropy; the same function as train_gpt2_tp.py
# and the dense model). nanoGPT's config/train_gpt2.py settings otherwise.
# run:
#   dgpt train configs/train_gpt2_tp_vocab.py
# comms per micro-step: forward all-reduce 24, backward all-reduce 24, f+g total 48
# (SPEC section 3: forward = 2*(#tp) + (#spd) + (#runs of consecutive parallel blocks))
# vocab-parallel comms per micro-step: embedding all-reduce 1, lm_head all-reduce 1, loss all-reduce 3
# (SPEC section 3: the embedding's g forward and the lm_head's f backward of B*T*C = 12*1024*768 elements each,
# the loss's shift/sum-of-exps/target-logit of B*T = 12*1024 elements each; in sampling the embedding's g and one gather of the
# last position's logits per forward pass). On CUDA in bfloat16 (`dgpt comms`): the embedding's g 37.75 MB (float32, the
# residual stream's start), the lm_head's f 18.87 MB, the loss 3 x 49.15 KB; 2121 collectives, 38.51 GB per optimizer
# step (train_gpt2_tp.py: 1921, 36.24 GB). What it saves is compute and memory: each rank holds and multiplies 1/4 of wte.

wandb_log = True
wandb_project = 'owt'
wandb_run_name='gpt2-124M-tp-vocab'

out_dir = 'out-gpt2-tp-vocab'

# these make the total batch size be ~0.5M
# 12 batch size * 1024 block size * 5 gradaccum * 8 GPUs = 491,520
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

# GPT-2 small, 3 heads and 768 MLP columns per shard
dataset = 'openwebtext'
model_type = 'distributed_gpt'
tp_size = 4
n_layer = 12
n_head = 12
n_embd = 768
block_types = ['tp'] * 12 # 12 * 2
# the tied wte/lm_head and the loss split by vocabulary: 50304 / 4 = 12576 rows per shard
vocab_parallel = True

# this makes total number of tokens be 300B
max_iters = 600000
lr_decay_iters = 600000

# eval stuff
eval_interval = 1000
eval_iters = 200
log_interval = 10

# weight decay
weight_decay = 1e-1
