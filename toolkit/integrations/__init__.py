"""Optional outside services a job can report to: Weights & Biases (logging.use_wandb) and the Hugging Face hub
(save.push_to_hub). Their clients are imported only when a job asks for them."""
