"""What every experiment binary shares: flags, config, the train loop."""
