// Test-data helper for tools/gen_pretokenize_expected.py (not part of the sluice build): runs
// llama.cpp's own pre-tokenizer, unicode_regex_split from libllama.so (llama-cpp-python 0.3.36's
// llama.cpp, where it is an exported C++ symbol), on texts read from stdin.
// Usage: llamacpp_split_oracle REGEX < texts   (one hex-encoded text per line)
// Output: per text, one line of the hex-encoded words (UTF-8, not byte-level encoded), space
// separated. Invalid UTF-8 comes back as U+FFFD per bad byte, as llama.cpp decodes it.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

// src/unicode.h of that llama.cpp version; the flag says whether words come back byte-level
// encoded (GPT-2's byte -> printable code point mapping).
std::vector<std::string> unicode_regex_split(const std::string& text, const std::vector<std::string>& regex_exprs,
                                             bool byte_encode);

namespace {

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string to_hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s REGEX < hex-encoded texts\n", argv[0]);
    return 2;
  }
  const std::vector<std::string> regexes = {argv[1]};
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::vector<std::string> words = unicode_regex_split(from_hex(line), regexes, /*byte_encode=*/false);
    for (std::size_t i = 0; i < words.size(); ++i) std::cout << (i ? " " : "") << to_hex(words[i]);
    std::cout << '\n';
  }
  return 0;
}
