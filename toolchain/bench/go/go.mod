module shuntbench

go 1.25
