// C++ iostreams, fstreams and std::thread.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <unistd.h>

int main(int argc, char **argv) {
    std::string dir = argc > 1 ? argv[1] : "/tmp";
    std::vector<long> sums(8);
    std::mutex m;
    std::vector<std::string> log;
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; t++)
        ts.emplace_back([t, &sums, &m, &log] {
            long s = 0;
            for (int i = 0; i < 100000; i++) s += (i * (t + 1)) % 97;
            sums[t] = s;
            std::lock_guard<std::mutex> g(m);
            log.push_back("thread " + std::to_string(t));
        });
    for (auto &t : ts) t.join();
    std::cout << "total " << std::accumulate(sums.begin(), sums.end(), 0L) << ", " << log.size() << " threads\n";
    std::string path = dir + "/iostream_thread." + std::to_string(::getpid()) + ".txt";
    {
        std::ofstream out(path);
        for (int i = 0; i < 5000; i++) out << "row " << i << ' ' << i * i << '\n';
    }
    std::ifstream in(path);
    std::string line;
    long rows = 0, chars = 0;
    while (std::getline(in, line)) { rows++; chars += line.size(); }
    std::remove(path.c_str());
    std::ostringstream os;
    os << "rows " << rows << " chars " << chars;
    std::cout << os.str() << std::endl;
    for (int i = 0; i < 3000; i++) std::cout << "cout line " << i << '\n';
    std::cerr << "cerr line" << std::endl;
    return 9;
}
