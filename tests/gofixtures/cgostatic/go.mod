module cgostatic

go 1.25
