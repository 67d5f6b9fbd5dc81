#include <iostream>

#include "greet.h"

int main() {
  std::cout << greeting("gorego") << "\n";
  return 0;
}
