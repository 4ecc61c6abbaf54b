module example.com/shunt/gated

go 1.22
