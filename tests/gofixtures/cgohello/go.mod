module cgohello

go 1.25
