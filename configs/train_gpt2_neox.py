# GPT-2 (124M) on OpenWebText, tensor parallel over 4 shards: every block 'neox' (GPT-NeoX's parallel residual: one all-reduce per block; another architecture than GPT-2's, the same at every tp_size).
# nanoGPT's config/train_gpt2.py settings otherwise.
# run:
#   dgpt train configs/train_gpt2_neox.py
# comms per micro-step: forward all-reduce 12, backward all-reduce 12, f+g total 24
# (SPEC section 3: forward = 2*(#tp) + (#spd) + (#runs of consecutive parallel blocks) + (#neox) + 2*(#ladder))

wandb_log = True
wandb_project = 'owt'
wandb_run_name='gpt2-124M-neox'

out_dir = 'out-gpt2-neox'

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
block_types = ['neox'] * 12 # 12 * 1

# this makes total number of tokens be 300B
max_iters = 600000
lr_decay_iters = 600000

# eval stuff
eval_interval = 1000
eval_iters = 200
log_interval = 10

# weight decay
weight_decay = 1e-1
