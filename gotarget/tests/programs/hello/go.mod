module example.com/shunt/hello

go 1.22
