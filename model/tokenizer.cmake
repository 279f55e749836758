# Tokenizer from GGUF vocabulary metadata (SentencePiece-style and GPT-2 byte-level BPE), plus the
# Unicode tables and pre-tokenizers it needs. Included from model/CMakeLists.txt.
add_library(sluice_tokenizer STATIC
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_vocab.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_encode.cpp
  ${CMAKE_CURRENT_LIST_DIR}/unicode.cpp
  ${CMAKE_CURRENT_LIST_DIR}/unicode_split.cpp
  ${CMAKE_CURRENT_LIST_DIR}/unicode_tables.cpp)
target_include_directories(sluice_tokenizer PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(sluice_tokenizer PRIVATE fmt::fmt)
