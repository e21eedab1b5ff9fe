# wengert-train under mpirun -np 2 (one epoch of 1,000 examples): it trains, rank 0 alone prints
# and writes, and the result agrees with --threads 2, which splits each batch the same way (the
# same shards, the same weighted mean): the test accuracies may differ only by float rounding
# of the reductions, i.e. by a handful of examples.
#   cmake -DMPIRUN=… -DTRAIN=… -DWORK=… -P train_mpi.cmake
file(REMOVE_RECURSE ${WORK})
set(cfg --epochs 1 --limit 1000 --batch 50 --hidden 16 --lr 0.01 --seed 3)
execute_process(COMMAND bash ${MPIRUN} -np 2 ${TRAIN} ${cfg} --out ${WORK}/mpi
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 90)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpirun -np 2 wengert-train: exit ${rc}\n${out}\n${err}")
endif()
foreach(want "data parallel: 2 ranks x 1 thread; --batch 50 is the global batch"
             "final test accuracy")
  string(FIND "${out}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${want}' in:\n${out}")
  endif()
endforeach()
string(REGEX MATCHALL "final test accuracy" finals "${out}")
list(LENGTH finals nfinal)
if(NOT nfinal EQUAL 1)
  message(FATAL_ERROR "${nfinal} ranks printed the result; only rank 0 may:\n${out}")
endif()
foreach(f metrics.csv weights.wgrt checkpoint.wgrt)
  if(NOT EXISTS ${WORK}/mpi/${f})
    message(FATAL_ERROR "rank 0 wrote no ${f}")
  endif()
endforeach()
string(REGEX MATCH "final test accuracy (0\\.[0-9]+)" m "${out}")
set(acc_mpi ${CMAKE_MATCH_1})
execute_process(COMMAND ${TRAIN} ${cfg} --threads 2 --out ${WORK}/threads
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 90)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "wengert-train --threads 2: exit ${rc}\n${out}\n${err}")
endif()
string(REGEX MATCH "final test accuracy (0\\.[0-9]+)" m "${out}")
set(acc_threads ${CMAKE_MATCH_1})
message(STATUS "test accuracy: mpirun -np 2 ${acc_mpi}, --threads 2 ${acc_threads}")
# Accuracies are printed with 4 decimals: compare in units of 1e-4.
string(REPLACE "0." "" a "${acc_mpi}")
string(REPLACE "0." "" b "${acc_threads}")
math(EXPR diff "${a} - ${b}")
if(diff LESS -10 OR diff GREATER 10)
  message(FATAL_ERROR "mpirun -np 2 (${acc_mpi}) and --threads 2 (${acc_threads}) disagree by more than 0.001")
endif()
if(a LESS 5000)
  message(FATAL_ERROR "mpirun -np 2 did not train (test accuracy ${acc_mpi})")
endif()
