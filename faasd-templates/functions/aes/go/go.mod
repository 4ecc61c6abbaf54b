module shunt.example/functions/aes

go 1.22
