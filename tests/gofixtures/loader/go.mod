module loader

go 1.25
