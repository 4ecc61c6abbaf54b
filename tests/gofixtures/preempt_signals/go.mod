module preempt_signals

go 1.25
