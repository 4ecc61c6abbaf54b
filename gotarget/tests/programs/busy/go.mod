module example.com/shunt/busy

go 1.22
