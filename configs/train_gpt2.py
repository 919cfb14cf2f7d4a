# GPT-2 (124M) on OpenWebText, dense model: nanoGPT's config/train_gpt2.py.
# run:
#   dgpt train configs/train_gpt2.py
# nanoGPT trains this on 8 GPUs with DDP (~5 days on 8X A100 40GB) down to a loss of ~2.85.

wandb_log = True
wandb_project = 'owt'
wandb_run_name='gpt2-124M'

out_dir = 'out-gpt2'
model_type = 'gpt'

# these make the total batch size be ~0.5M
# 12 batch size * 1024 block size * 5 gradaccum * 8 GPUs = 491,520
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

# GPT-2 small
dataset = 'openwebtext'
n_layer = 12
n_head = 12
n_embd = 768

# this makes total number of tokens be 300B
max_iters = 600000
lr_decay_iters = 600000

# eval stuff
eval_interval = 1000
eval_iters = 200
log_interval = 10

# weight decay
weight_decay = 1e-1
