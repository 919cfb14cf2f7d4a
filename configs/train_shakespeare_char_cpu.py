# Quick CPU run: a small tensor-parallel GPT (tp_size 2) on character-level Shakespeare, with one
# block of each type; nanoGPT's "on a laptop" settings (README: --device=cpu --block_size=64 ...).
# run:
#   dgpt train configs/train_shakespeare_char_cpu.py
# comms per micro-step: forward all-reduce 4, backward all-reduce 4, f+g total 8
# (SPEC section 3: forward = 2*(#tp) + (#spd) + (#runs of consecutive parallel blocks))

out_dir = 'out-shakespeare-char-cpu'
device = 'cpu'
eval_interval = 250
eval_iters = 20
log_interval = 50

# only save when val improves
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

model_type = 'distributed_gpt'
tp_size = 2
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
block_types = ['tp', 'spd', 'parallel', 'parallel'] # 2 + 1 + 1 (one parallel run)

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000 # make equal to max_iters usually
min_lr = 1e-4 # learning_rate / 10 usually
beta2 = 0.99
warmup_iters = 100
