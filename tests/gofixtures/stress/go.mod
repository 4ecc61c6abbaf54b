module stress

go 1.25
