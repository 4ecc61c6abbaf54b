module handler

go 1.25
