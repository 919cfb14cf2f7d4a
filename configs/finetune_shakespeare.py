# Fine-tune OpenAI's GPT-2 XL on Shakespeare (GPT-2 BPE), as nanoGPT's config/finetune_shakespeare.py:
# the weights from Hugging Face's files (init_from='gpt2-xl': model.safetensors + config.json in the
# Hugging Face cache, or pretrained_dir; `huggingface-cli download gpt2-xl model.safetensors config.json`),
# a fresh optimizer at iter 0, a constant learning rate.
# run:
#   dgpt prepare shakespeare && dgpt train configs/finetune_shakespeare.py
# comms: none (the dense model). With --model_type=distributed_gpt --tp_size=N (all 'tp': GPT-2's function)
# per micro-step: forward all-reduce 96, backward all-reduce 96 (SPEC section 3: 2 x 48 tp blocks).
import time

out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False # feel free to turn on
wandb_project = 'shakespeare'
wandb_run_name = 'ft-' + str(time.time())

dataset = 'shakespeare'
init_from = 'gpt2-xl' # this is the largest GPT-2 model

# only save checkpoints if the validation loss improves
always_save_checkpoint = False

# the number of examples per iter:
# 1 batch_size * 32 grad_accum * 1024 tokens = 32,768 tokens/iter
# shakespeare has 301,966 tokens, so 1 epoch ~= 9.2 iters
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20

# finetune at constant LR
learning_rate = 3e-5
decay_lr = False
