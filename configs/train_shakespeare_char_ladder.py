# nanoGPT's baby GPT on character-level Shakespeare, tensor parallel (tp_size 2): every block 'ladder' (Ladder Residual: each sub-layer reads the stream without its predecessor's output, so its all-reduce may overlap the next sub-layer).
# run:
#   dgpt train configs/train_shakespeare_char_ladder.py
# comms per micro-step: forward all-reduce 12, backward all-reduce 12, f+g total 24
# (SPEC section 3: forward = 2*(#tp) + (#spd) + (#runs of consecutive parallel blocks) + (#neox) + 2*(#ladder))

out_dir = 'out-shakespeare-char-ladder'
eval_interval = 250 # keep frequent because we'll overfit
eval_iters = 200
log_interval = 10 # don't print too too often

# we expect to overfit on this small dataset, so only save when val improves
always_save_checkpoint = False

wandb_log = False # override via command line if you like
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256 # context of up to 256 previous characters

# baby GPT model, sharded 2 ways: 3 heads and 768 MLP columns per shard
model_type = 'distributed_gpt'
tp_size = 2
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
block_types = ['ladder'] * 6 # 2 all-reduces per block, each free to overlap the next sub-layer

learning_rate = 1e-3 # with baby networks can afford to go a bit higher
max_iters = 5000
lr_decay_iters = 5000 # make equal to max_iters usually
min_lr = 1e-4 # learning_rate / 10 usually
beta2 = 0.99 # make a bit bigger because number of tokens per iter is small

warmup_iters = 100 # not super necessary potentially
