// write_tiny_model OUT CASE [--pack]: writes tests/model/tiny_model.hpp's tiny model, unchanged
// (CASE "good_<arch>") or made bad by one of its cases, as a GGUF or (--pack) a pack, and prints
// the words the loader's error must contain, one per line. Drives test_bad_model_cli.sh.
#include <cstring>
#include <iostream>

#include "tests/model/tiny_model.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: write_tiny_model OUT CASE [--pack]\n";
    return 2;
  }
  const std::string out = argv[1], name = argv[2];
  const bool pack = argc > 3 && std::strcmp(argv[3], "--pack") == 0;
  using namespace sluice::testing;
  try {
    TinyModel model;
    std::vector<std::string> words;
    if (name.rfind("good_", 0) == 0) {
      model = tiny_model(name.substr(5));
    } else {
      std::vector<BadModelCase> cases = bad_metadata_cases();
      for (auto& c : bad_tensor_cases()) cases.push_back(std::move(c));
      const BadModelCase* found = nullptr;
      for (const auto& c : cases) {
        if (c.name == name) found = &c;
      }
      if (!found) {
        std::cerr << "write_tiny_model: no case " << name << "\n";
        return 2;
      }
      model = tiny_model(found->arch);
      found->mutate(model);
      words = found->words;
    }
    if (pack) write_pack(model, out);
    else write_gguf(model, out);
    for (const auto& w : words) std::cout << w << "\n";
  } catch (const std::exception& e) {
    std::cerr << "write_tiny_model: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
