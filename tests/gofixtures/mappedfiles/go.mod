module mappedfiles

go 1.22
